-- 2: subscriptions and the delivery outbox.
-- Per-source subscribers, each with its own secret; after a rotation the previous one signs too, for a day.
CREATE TABLE subscriptions (
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
CREATE TABLE deliveries (
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
CREATE INDEX deliveries_due ON deliveries (next_attempt_at)
    WHERE status IN ('pending', 'retrying', 'delivering');
-- "Is an earlier delivery of this job to this target still undelivered?" and per-job listing and purging.
CREATE INDEX deliveries_by_job ON deliveries (source, job_id, target, event_row);
CREATE INDEX deliveries_by_subscription ON deliveries (subscription_id, status)
    WHERE subscription_id IS NOT NULL;
CREATE INDEX deliveries_by_status ON deliveries (status, id);

CREATE TABLE delivery_attempts (
    id            INTEGER PRIMARY KEY,
    delivery_id   INTEGER NOT NULL,
    attempted_at  REAL NOT NULL,
    status_code   INTEGER,
    latency_ms    REAL NOT NULL,
    error         TEXT,
    response      BLOB NOT NULL
);
CREATE INDEX delivery_attempts_by_delivery ON delivery_attempts (delivery_id, id);
