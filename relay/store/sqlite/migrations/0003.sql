-- 3: callbacks and events keyed by the job's row. The old tables move aside, their rows come back keyed by
-- their job's row under the same ids (the SSE stream's ids), and the old tables go.
DROP INDEX callbacks_by_job; ALTER TABLE callbacks RENAME TO callbacks_v2;
DROP INDEX events_by_job; ALTER TABLE events RENAME TO events_v2;

-- A job's history, keyed by its row: a new job's rows and index entries are appended, not spread over
-- the file as keys of random job IDs would be. A redelivery (same job, same delivery ID) is refused here.
CREATE TABLE callbacks (
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
CREATE TABLE events (
    id            INTEGER PRIMARY KEY,
    event_id      TEXT NOT NULL,
    job_row       INTEGER NOT NULL,
    type          TEXT NOT NULL,
    created_at    REAL NOT NULL,
    data          BLOB NOT NULL
);
CREATE INDEX events_by_job ON events (job_row, id);

INSERT INTO callbacks (id, job_row, delivery_id, received_at, status, via, body)
    SELECT c.id, j.id, c.delivery_id, c.received_at, c.status, c.via, c.body
    FROM callbacks_v2 c JOIN jobs j ON j.source = c.source AND j.job_id = c.job_id ORDER BY c.id;
INSERT INTO events (id, event_id, job_row, type, created_at, data)
    SELECT e.id, e.event_id, j.id, e.type, e.created_at, e.data
    FROM events_v2 e JOIN jobs j ON j.source = e.source AND j.job_id = e.job_id ORDER BY e.id;
DROP TABLE callbacks_v2; DROP TABLE events_v2;
