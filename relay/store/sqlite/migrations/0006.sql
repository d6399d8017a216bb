-- 6: a subscription's deliveries by state and time, for /metrics' backlog gauges (relay/store/backlog.py):
-- each of due, in flight and dead is a range of this index, counted up to a cap without reading a row. The
-- index it replaces (same name, without the time) left out jobs' own subscribers (no subscription_id); this
-- one holds them too, under NULL. Listing and giving up a subscription's deliveries read its first columns.
DROP INDEX deliveries_by_subscription;
CREATE INDEX deliveries_by_subscription ON deliveries (subscription_id, status, next_attempt_at);
