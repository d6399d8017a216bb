-- relay's SQLite schema at version 3, as released: the starting point of a migration test.
-- Times are unix seconds (REAL); JSON is stored as orjson bytes.
CREATE TABLE IF NOT EXISTS jobs (
    id            INTEGER PRIMARY KEY,
    source        TEXT NOT NULL,
    job_id        TEXT NOT NULL,
    status        TEXT NOT NULL,
    result        BLOB,
    error         TEXT,
    late          INTEGER NOT NULL DEFAULT 0,
    metadata      BLOB NOT NULL DEFAULT '{}',
    subscribers   BLOB NOT NULL DEFAULT '[]',
    timeout_s     REAL,
    created_at    REAL NOT NULL,
    updated_at    REAL NOT NULL,
    finished_at   REAL,
    deadline      REAL,
    reconcile_at  REAL,
    callbacks     INTEGER NOT NULL DEFAULT 0,
    UNIQUE (source, job_id)
);
CREATE INDEX IF NOT EXISTS jobs_by_source ON jobs (source, id);
CREATE INDEX IF NOT EXISTS jobs_by_status ON jobs (status, id);
-- The sweeper's index: only jobs that can still time out are in it.
CREATE INDEX IF NOT EXISTS jobs_open_deadline ON jobs (deadline) WHERE status IN ('pending', 'running');
CREATE INDEX IF NOT EXISTS jobs_open_reconcile ON jobs (reconcile_at)
    WHERE reconcile_at IS NOT NULL AND status IN ('pending', 'running');
-- Retention reads finished jobs oldest first.
CREATE INDEX IF NOT EXISTS jobs_finished ON jobs (finished_at) WHERE finished_at IS NOT NULL;

-- A job's history, keyed by its row: a new job's rows and index entries are appended, not spread over
-- the file as keys of random job IDs would be. A redelivery (same job, same delivery ID) is refused here.
CREATE TABLE IF NOT EXISTS callbacks (
    id            INTEGER PRIMARY KEY,
    job_row       INTEGER NOT NULL,
    delivery_id   TEXT NOT NULL,
    received_at   REAL NOT NULL,
    status        TEXT NOT NULL,
    via           TEXT NOT NULL,
    body          BLOB NOT NULL,
    UNIQUE (job_row, delivery_id)
);

-- Every status change of a job, in order: the SSE stream's ids and the source of subscriber deliveries.
-- `event_id` (the deliveries' webhook-id) starts with the time, so ids sort by creation.
CREATE TABLE IF NOT EXISTS events (
    id            INTEGER PRIMARY KEY,
    event_id      TEXT NOT NULL,
    job_row       INTEGER NOT NULL,
    type          TEXT NOT NULL,
    created_at    REAL NOT NULL,
    data          BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS events_by_job ON events (job_row, id);

-- Per-source subscribers, each with its own secret; after a rotation the previous one signs too, for a day.
CREATE TABLE IF NOT EXISTS subscriptions (
    id                    TEXT PRIMARY KEY,
    url                   TEXT NOT NULL,
    source                TEXT,
    events                BLOB,
    secret                TEXT NOT NULL,
    previous_secret       TEXT,
    previous_secret_until REAL,
    created_at            REAL NOT NULL,
    disabled_at           REAL,
    disabled_reason       TEXT
);

-- The delivery outbox: one row per event per subscriber, written in the transaction that made the event.
-- `target` orders a job's deliveries (the subscription id, or a per-job subscriber's URL); `endpoint`
-- (scheme://host:port) is what concurrency limits and the circuit breaker count by. While a delivery is in
-- flight its `next_attempt_at` is its lease's end, so an expired lease is simply due again.
CREATE TABLE IF NOT EXISTS deliveries (
    id                INTEGER PRIMARY KEY,
    event_row         INTEGER NOT NULL,
    event_id          TEXT NOT NULL,
    event_type        TEXT NOT NULL,
    source            TEXT NOT NULL,
    job_id            TEXT NOT NULL,
    subscription_id   TEXT,
    url               TEXT NOT NULL,
    target            TEXT NOT NULL,
    endpoint          TEXT NOT NULL,
    status            TEXT NOT NULL,
    attempts          INTEGER NOT NULL DEFAULT 0,
    failures          INTEGER NOT NULL DEFAULT 0,
    quick_retried     INTEGER NOT NULL DEFAULT 0,
    next_attempt_at   REAL,
    created_at        REAL NOT NULL,
    updated_at        REAL NOT NULL,
    delivered_at      REAL,
    last_status_code  INTEGER,
    last_error        TEXT,
    UNIQUE (event_row, target)
);
-- The claim reads due rows in time order from this index: only undelivered rows are in it.
CREATE INDEX IF NOT EXISTS deliveries_due ON deliveries (next_attempt_at)
    WHERE status IN ('pending', 'retrying', 'delivering');
-- "Is an earlier delivery of this job to this target still undelivered?" and per-job listing and purging.
CREATE INDEX IF NOT EXISTS deliveries_by_job ON deliveries (source, job_id, target, event_row);
CREATE INDEX IF NOT EXISTS deliveries_by_subscription ON deliveries (subscription_id, status)
    WHERE subscription_id IS NOT NULL;
CREATE INDEX IF NOT EXISTS deliveries_by_status ON deliveries (status, id);

CREATE TABLE IF NOT EXISTS delivery_attempts (
    id            INTEGER PRIMARY KEY,
    delivery_id   INTEGER NOT NULL,
    attempted_at  REAL NOT NULL,
    status_code   INTEGER,
    latency_ms    REAL NOT NULL,
    error         TEXT,
    response      BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS delivery_attempts_by_delivery ON delivery_attempts (delivery_id, id);
