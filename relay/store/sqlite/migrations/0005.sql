-- 5: leases: one holder at a time of a named task across relay processes (the sweeper's). Taken or renewed
-- by one conditional upsert (relay/store/leases.py), given up at shutdown, lapsed once `expires_at` passes.
CREATE TABLE leases (
    name        TEXT PRIMARY KEY,
    holder      TEXT NOT NULL,
    expires_at  REAL NOT NULL
);
