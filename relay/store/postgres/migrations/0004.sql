-- 4: a job's latest non-final payload (its `progress`, relay/domain/progress.py), as orjson bytes; NULL
-- until a non-final callback carries one.
ALTER TABLE jobs ADD COLUMN progress BYTEA;
