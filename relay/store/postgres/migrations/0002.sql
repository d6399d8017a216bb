-- 2: leases: one holder at a time of a named task across relay processes (the sweeper's). Taken or renewed
-- by one conditional upsert (relay/store/leases.py), given up at shutdown, lapsed once `expires_at` passes.
-- A row rather than pg_try_advisory_lock: it needs no session of its own, so it works behind PgBouncer in
-- transaction mode.
CREATE TABLE leases (
    name        TEXT PRIMARY KEY,
    holder      TEXT NOT NULL,
    expires_at  DOUBLE PRECISION NOT NULL
);
