-- 8: archived files (issue 14): one row per URL of a final result on an archive host, written in the
-- transaction that made the job final, and the archive queue itself. While a file is being fetched
-- (`fetching`) its `next_attempt_at` is its lease's end, so an expired lease is simply due again. Retention
-- marks a purged job's files `purged` (job_row NULL) until the archiver has deleted their bytes.
CREATE TABLE files (
    id               TEXT PRIMARY KEY,
    job_row          INTEGER,
    source           TEXT NOT NULL,
    position         INTEGER NOT NULL,
    pointer          TEXT NOT NULL,
    source_url       TEXT NOT NULL,
    url              TEXT NOT NULL,
    host             TEXT NOT NULL,
    status           TEXT NOT NULL,
    attempts         INTEGER NOT NULL DEFAULT 0,
    next_attempt_at  REAL,
    created_at       REAL NOT NULL,
    updated_at       REAL NOT NULL,
    bytes            INTEGER,
    sha256           TEXT,
    content_type     TEXT,
    error            TEXT
);
CREATE INDEX files_by_job ON files (job_row, position);
-- The archiver reads due rows in time order from this index: only unsettled and purged rows are in it.
CREATE INDEX files_due ON files (next_attempt_at) WHERE status IN ('pending', 'fetching', 'purged');
