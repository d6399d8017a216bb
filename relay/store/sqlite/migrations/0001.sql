-- 1: jobs and their history (callbacks and events keyed by source and job ID).
-- Times are unix seconds (REAL); JSON is stored as orjson bytes.
CREATE TABLE jobs (
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
CREATE INDEX jobs_by_source ON jobs (source, id);
CREATE INDEX jobs_by_status ON jobs (status, id);
-- The sweeper's index: only jobs that can still time out are in it.
CREATE INDEX jobs_open_deadline ON jobs (deadline) WHERE status IN ('pending', 'running');
CREATE INDEX jobs_open_reconcile ON jobs (reconcile_at)
    WHERE reconcile_at IS NOT NULL AND status IN ('pending', 'running');
-- Retention reads finished jobs oldest first.
CREATE INDEX jobs_finished ON jobs (finished_at) WHERE finished_at IS NOT NULL;

CREATE TABLE callbacks (
    id            INTEGER PRIMARY KEY,
    source        TEXT NOT NULL,
    job_id        TEXT NOT NULL,
    delivery_id   TEXT NOT NULL,
    received_at   REAL NOT NULL,
    status        TEXT NOT NULL,
    via           TEXT NOT NULL,
    body          BLOB NOT NULL,
    UNIQUE (source, delivery_id)
);
CREATE INDEX callbacks_by_job ON callbacks (source, job_id, id);

-- Every status change of a job, in order: the SSE stream's ids and the source of subscriber deliveries.
CREATE TABLE events (
    id            INTEGER PRIMARY KEY,
    event_id      TEXT NOT NULL UNIQUE,
    source        TEXT NOT NULL,
    job_id        TEXT NOT NULL,
    type          TEXT NOT NULL,
    created_at    REAL NOT NULL,
    data          BLOB NOT NULL
);
CREATE INDEX events_by_job ON events (source, job_id, id);
