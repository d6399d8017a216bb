-- 4: an event is the history entry that made it (no events table). An entry that changed the job's status
-- is also that change's event (`event_id`, `type`, `data`: the job as it then stood): the SSE stream's ids
-- are the entries' ids, and subscriber deliveries are made from it.
DROP INDEX events_by_job; ALTER TABLE events RENAME TO events_v3;
ALTER TABLE callbacks ADD COLUMN event_id TEXT; ALTER TABLE callbacks ADD COLUMN type TEXT;
ALTER TABLE callbacks ADD COLUMN data BLOB;

-- Each event was written with the history entry that caused it, at the same instant: it joins that entry.
-- An event with no such entry (none is known) is kept as an entry of its own, so nothing is lost. Queued
-- deliveries then point at the entry that holds their event (through negative numbers, so that no row
-- collides with another's old number on the way).
-- (Correlated subqueries rather than UPDATE ... FROM, which SQLite before 3.33 lacks.)
CREATE INDEX events_v3_by_entry ON events_v3 (job_row, created_at);
UPDATE callbacks SET (event_id, type, data) = (
        SELECT e.event_id, e.type, e.data FROM events_v3 e
        WHERE e.job_row = callbacks.job_row AND e.created_at = callbacks.received_at ORDER BY e.id LIMIT 1)
    WHERE EXISTS (SELECT 1 FROM events_v3 e
        WHERE e.job_row = callbacks.job_row AND e.created_at = callbacks.received_at);
CREATE INDEX callbacks_by_event_migrating ON callbacks (event_id) WHERE event_id IS NOT NULL;
INSERT INTO callbacks (job_row, delivery_id, received_at, status, via, body, event_id, type, data)
    SELECT e.job_row, e.event_id, e.created_at, substr(e.type, 5), 'event', x'7b7d', e.event_id, e.type,
        e.data
    FROM events_v3 e WHERE NOT EXISTS (SELECT 1 FROM callbacks c WHERE c.event_id = e.event_id)
    ORDER BY e.id;
UPDATE deliveries SET event_row = -(SELECT c.id FROM callbacks c WHERE c.event_id = deliveries.event_id)
    WHERE EXISTS (SELECT 1 FROM callbacks c WHERE c.event_id = deliveries.event_id);
UPDATE deliveries SET event_row = -event_row WHERE event_row < 0;
DROP INDEX callbacks_by_event_migrating; DROP TABLE events_v3;
