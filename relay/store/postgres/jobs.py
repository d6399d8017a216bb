"""Jobs for PostgreSQL: the SQL of a callback, a registration, a history entry and retention (time-outs are
in timeouts.py).

Each function runs inside the caller's transaction; the job's row is locked (`FOR UPDATE`) before a rule of
relay/domain/jobs.py decides what to write, so two callbacks for one job on two connections take turns.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any

import orjson

from relay.domain.archive import with_files
from relay.domain.jobs import (
    apply_callback,
    merge_registration,
    new_event_id,
    new_job_from_callback,
    reconcile_at,
)
from relay.file_models import ArchivedFile
from relay.models import Callback, Event, IngestOutcome, Job, Registration
from relay.store.numbered import numbered
from relay.store.postgres.files import purge_files, queue_files
from relay.store.postgres.notify import job_payload, notify_job_sql
from relay.store.postgres.outbox import backfill_deliveries, queue_deliveries_to
from relay.store.postgres.subscriptions import recipient_from_row
from relay.store.rows import SELECT_JOB, dump, job_from_row

if TYPE_CHECKING:
    from asyncpg import Connection

__all__ = [
    "LOCK_JOB",
    "MOVED",
    "ingest_callback",
    "moved",
    "purge_finished",
    "record_entry",
    "register_job",
    "write_job",
]

LOCK_JOB = numbered(f"{SELECT_JOB} FOR UPDATE")

# The columns a rule of relay/domain/jobs.py may move, in the order `_moved` gives their values.
MOVED = (
    "status, late, result, error, metadata, subscribers, timeout_s, updated_at, finished_at, deadline,"
    " callbacks, progress"
)
_INSERT_JOB = (
    f"INSERT INTO jobs (source, job_id, created_at, reconcile_at, {MOVED})"
    " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16)"
    " ON CONFLICT (source, job_id) DO NOTHING RETURNING id"
)
# A callback's first word about a job: the insert also tells other processes (NOTIFY is sent at COMMIT), in
# the same round trip.
_INSERT_JOB_NOTIFYING = f"{_INSERT_JOB}, {notify_job_sql('$17')}"
_UPDATE_JOB = (
    f"UPDATE jobs SET ({MOVED}) = ($2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13) WHERE id = $1"
)
_UPDATE_JOB_NOTIFYING = f"{_UPDATE_JOB} RETURNING {notify_job_sql('$14')}"
_RECORD = (
    "INSERT INTO callbacks (job_row, delivery_id, received_at, status, via, body, event_id, type, data)"
    " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) ON CONFLICT (job_row, delivery_id) DO NOTHING RETURNING id"
)
# An entry with its event, and the subscriptions fan-out matches it against, in one round trip: no row when
# the entry was a redelivery, else one per enabled subscription (or one of NULLs when there is none).
_RECORD_EVENT = f"""WITH entry AS ({_RECORD})
SELECT entry.id, s.id, s.url, s.source, s.events
FROM entry LEFT JOIN subscriptions s ON s.disabled_at IS NULL"""


def moved(job: Job) -> tuple[Any, ...]:
    """The values of `MOVED` for `job`."""
    json = (dump(job.result), job.error, orjson.dumps(job.metadata), orjson.dumps(list(job.subscribers)))
    times = (job.timeout_s, job.updated_at, job.finished_at, job.deadline)
    return (job.status.value, job.late, *json, *times, job.callbacks, dump(job.progress))


async def _insert(
    conn: Connection, job: Job, reconcile_after_s: float | None, notifying: bool = False
) -> Job | None:
    """Insert a new job (`notifying`: and tell other processes it changed); None when it is known already
    (perhaps made by a transaction just committed)."""
    reconcile = reconcile_at(job, reconcile_after_s)
    values = (job.source, job.job_id, job.created_at, reconcile, *moved(job))
    if notifying:
        row_id = await conn.fetchval(_INSERT_JOB_NOTIFYING, *values, job_payload(job.source, job.job_id))
    else:
        row_id = await conn.fetchval(_INSERT_JOB, *values)
    # Built for this insert, the job is held by nobody else yet: its row id is set in place.
    if row_id is not None:
        object.__setattr__(job, "row_id", row_id)
    return None if row_id is None else job


_COUNT_CALLBACK = "UPDATE jobs SET callbacks = $2 WHERE id = $1"


async def write_job(conn: Connection, job: Job, sql: str = _UPDATE_JOB, *more: Any) -> None:
    """Store the job as a rule answered it (`more`: the values `sql` binds after the job's)."""
    await conn.execute(sql, job.row_id, *moved(job), *more)


async def record_entry(
    conn: Connection, job_row: int, cb: Callback, now: float, changed: Job | None, kind: str | None = None
) -> int | None:
    """Keep one history entry, and when it changed the job (`changed`, as it now stands) the change's event
    (`kind`, by default its status's) with its deliveries queued; answer how many, or None for a redelivery
    (nothing stored)."""
    head = (job_row, cb.delivery_id, now, cb.status.value, cb.via, cb.body)
    if changed is None:
        return None if await conn.fetchval(_RECORD, *head, None, None, None) is None else 0
    kind = kind or Event.type_for(changed.status)
    event = Event(0, new_event_id(now), changed.source, changed.job_id, kind, now, changed.to_public())
    rows = await conn.fetch(_RECORD_EVENT, *head, event.event_id, kind, orjson.dumps(event.data))
    if not rows:
        return None
    everyone = [recipient_from_row(row[1:]) for row in rows if row[1] is not None]
    return await queue_deliveries_to(conn, replace(event, id=rows[0][0]), changed, now, everyone)


async def ingest_callback(
    conn: Connection,
    source: str,
    cb: Callback,
    now: float,
    timeout_s: float,
    reconcile_after_s: float | None,
    files: Sequence[ArchivedFile] = (),
) -> IngestOutcome:
    """Store a callback and apply it to its job, creating the job if this is its first word. `files` (found
    in the callback's result) are queued for archiving when the callback makes the job final."""
    while True:  # again only if the job was purged between the insert and the lock
        job = new_job_from_callback(source, cb, now, timeout_s)
        created = await _insert(conn, job, reconcile_after_s, notifying=True)
        if created is not None:
            with_files(created, files)
            queued = await record_entry(conn, created.row_id, cb, now, created)
            await queue_files(conn, created, now)
            return IngestOutcome(created, duplicate=False, changed=True, queued=queued or 0)
        # The row exists (the insert saw it, committed): lock it, so the rule sees the last change made.
        row = await conn.fetchrow(LOCK_JOB, source, cb.job_id)
        if row is not None:
            break
    before = job_from_row(row)
    change = apply_callback(before, cb, now, timeout_s)
    if change.step.changed:
        with_files(change.job, files)  # before the entry: its event carries them
    queued = await record_entry(
        conn, before.row_id, cb, now, change.job if change.changed else None, change.event_type
    )
    if queued is None:  # a redelivery: already kept, changes nothing
        return IngestOutcome(before, duplicate=True, changed=False)
    await queue_files(conn, change.job, now)
    if change.changed:
        await write_job(conn, change.job, _UPDATE_JOB_NOTIFYING, job_payload(source, cb.job_id))
    else:  # it only counts (apply_callback's rule): no column but the count is written again
        await conn.execute(_COUNT_CALLBACK, change.job.row_id, change.job.callbacks)
    return change.outcome(queued)


async def register_job(
    conn: Connection, reg: Registration, now: float, timeout_s: float, reconcile_after_s: float | None
) -> tuple[Job, bool]:
    """Create the registered job or merge into the known one; answer it and whether it was created."""
    while True:  # at most twice: a job made meanwhile by another transaction is then found and locked
        row = await conn.fetchrow(LOCK_JOB, reg.source, reg.job_id)
        before = None if row is None else job_from_row(row)
        change = merge_registration(before, reg, now, timeout_s)
        if before is not None:
            await write_job(conn, change.job)
            # Subscribers added after the job finished still get its final event.
            await backfill_deliveries(conn, change.job, change.new_subscribers, now)
            return change.job, False
        created = await _insert(conn, change.job, reconcile_after_s)
        if created is not None:
            return created, True


async def purge_finished(conn: Connection, before: float, limit: int) -> int:
    """Delete up to `limit` jobs finished before `before`, with everything stored about them."""
    # SKIP LOCKED: two sweepers purging at once split the work instead of waiting on each other.
    rows = await conn.fetch(
        "SELECT id, source, job_id FROM jobs WHERE finished_at IS NOT NULL AND finished_at < $1"
        " ORDER BY finished_at LIMIT $2 FOR UPDATE SKIP LOCKED",
        before,
        limit,
    )
    if not rows:
        return 0
    ids, sources, job_ids = ([row[i] for row in rows] for i in range(3))
    of_jobs = "SELECT d.id FROM deliveries d JOIN unnest($1::text[], $2::text[]) AS g (source, job_id)"
    of_jobs += " ON d.source = g.source AND d.job_id = g.job_id"
    await conn.execute(f"DELETE FROM delivery_attempts WHERE delivery_id IN ({of_jobs})", sources, job_ids)
    await conn.execute(f"DELETE FROM deliveries WHERE id IN ({of_jobs})", sources, job_ids)
    await purge_files(conn, ids)  # their bytes are deleted by the archiver, then the rows
    # The history goes with its job (ON DELETE CASCADE).
    await conn.execute("DELETE FROM jobs WHERE id = ANY($1::bigint[])", ids)
    return len(rows)
