-- 1: the whole schema, as SQLite's stands after its migration 4 (same tables and columns).
-- Times are unix seconds (DOUBLE PRECISION, what the domain passes); JSON is kept as the orjson bytes (BYTEA),
-- so a read gives back exactly what was written and decodes as on SQLite.
CREATE TABLE jobs (
    id            BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    source        TEXT NOT NULL,
    job_id        TEXT NOT NULL,
    status        TEXT NOT NULL,
    result        BYTEA,
    error         TEXT,
    late          BOOLEAN NOT NULL DEFAULT false,
    metadata      BYTEA NOT NULL DEFAULT '\x7b7d',
    subscribers   BYTEA NOT NULL DEFAULT '\x5b5d',
    timeout_s     DOUBLE PRECISION,
    created_at    DOUBLE PRECISION NOT NULL,
    updated_at    DOUBLE PRECISION NOT NULL,
    finished_at   DOUBLE PRECISION,
    deadline      DOUBLE PRECISION,
    reconcile_at  DOUBLE PRECISION,
    callbacks     INTEGER NOT NULL DEFAULT 0,
    CONSTRAINT jobs_source_job_id_key UNIQUE (source, job_id)
);
CREATE INDEX jobs_by_source ON jobs (source, id);
CREATE INDEX jobs_by_status ON jobs (status, id);
-- The sweeper's indexes: only jobs that can still time out (or are due an early reconcile) are in them.
CREATE INDEX jobs_open_deadline ON jobs (deadline) WHERE status IN ('pending', 'running');
CREATE INDEX jobs_open_reconcile ON jobs (reconcile_at)
    WHERE reconcile_at IS NOT NULL AND status IN ('pending', 'running');
-- Retention reads finished jobs oldest first.
CREATE INDEX jobs_finished ON jobs (finished_at) WHERE finished_at IS NOT NULL;

-- A job's history; an entry that changed the job's status is also that change's event (`event_id`, `type`,
-- `data`: the job as it then stood). A redelivery (same job, same delivery ID) is refused by the key.
CREATE TABLE callbacks (
    id            BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    job_row       BIGINT NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    delivery_id   TEXT NOT NULL,
    received_at   DOUBLE PRECISION NOT NULL,
    status        TEXT NOT NULL,
    via           TEXT NOT NULL,
    body          BYTEA NOT NULL,
    event_id      TEXT,
    type          TEXT,
    data          BYTEA,
    CONSTRAINT callbacks_job_row_delivery_id_key UNIQUE (job_row, delivery_id)
);
-- A job's history and events in order (the SSE stream reads events after an id).
CREATE INDEX callbacks_by_job ON callbacks (job_row, id);

-- Per-source subscribers, each with its own secret; after a rotation the previous one signs too, for a while.
CREATE TABLE subscriptions (
    id                    TEXT PRIMARY KEY,
    url                   TEXT NOT NULL,
    source                TEXT,
    events                BYTEA,
    secret                TEXT NOT NULL,
    previous_secret       TEXT,
    previous_secret_until DOUBLE PRECISION,
    created_at            DOUBLE PRECISION NOT NULL,
    disabled_at           DOUBLE PRECISION,
    disabled_reason       TEXT
);

-- The delivery outbox: one row per event per subscriber, written in the transaction that made the event.
-- `target` orders a job's deliveries (the subscription id, or a per-job subscriber's URL); `endpoint`
-- (scheme://host:port) is what concurrency limits and the circuit breaker count by. While a delivery is in
-- flight its `next_attempt_at` is its lease's end, so an expired lease is simply due again.
CREATE TABLE deliveries (
    id                BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    event_row         BIGINT NOT NULL,
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
    quick_retried     BOOLEAN NOT NULL DEFAULT false,
    next_attempt_at   DOUBLE PRECISION,
    created_at        DOUBLE PRECISION NOT NULL,
    updated_at        DOUBLE PRECISION NOT NULL,
    delivered_at      DOUBLE PRECISION,
    last_status_code  INTEGER,
    last_error        TEXT,
    CONSTRAINT deliveries_event_row_target_key UNIQUE (event_row, target)
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
    id            BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    delivery_id   BIGINT NOT NULL,
    attempted_at  DOUBLE PRECISION NOT NULL,
    status_code   INTEGER,
    latency_ms    DOUBLE PRECISION NOT NULL,
    error         TEXT,
    response      BYTEA NOT NULL
);
CREATE INDEX delivery_attempts_by_delivery ON delivery_attempts (delivery_id, id);
