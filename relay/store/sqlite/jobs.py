"""Jobs for SQLite: the SQL of a callback, a registration, a history entry, and the sweeper's.

The writes run on the group-commit writer's connection, inside the batch's transaction; what they write is
what relay/domain/jobs.py answers. Rows are mapped to jobs in relay/store/rows.py.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence

import orjson

from relay.domain.jobs import (
    JobChange,
    apply_callback,
    merge_registration,
    new_event_id,
    new_job_from_callback,
    reconcile_at,
    time_out_entry,
)
from relay.domain.jobs import time_out as timed_out
from relay.domain.outbox import targets_for
from relay.models import Callback, Event, IngestOutcome, Job, Registration
from relay.store.rows import JOB_COLUMNS, OPEN, SELECT_JOB, dump, job_from_row
from relay.store.sqlite.outbox import backfill, fan_out
from relay.store.sqlite.subscriptions import recipients

__all__ = [
    "OVERDUE_SQL",
    "RECONCILE_DUE_SQL",
    "clear_reconcile",
    "extend_deadline",
    "ingest_callback",
    "purge_finished",
    "register_job",
    "time_out",
    "time_out_many",
]


def _stored(job: Job, row_id: int | None) -> Job:
    """The job just inserted, with its row id."""
    assert row_id is not None
    # Built for this insert, the job is held by nobody else yet: setting its row id in place spares a copy
    # (`replace` costs 2 µs) on the hottest path.
    object.__setattr__(job, "row_id", row_id)
    return job


_RECORD = (
    "INSERT INTO callbacks (job_row, delivery_id, received_at, status, via, body) VALUES (?, ?, ?, ?, ?, ?)"
    " ON CONFLICT (job_row, delivery_id) DO NOTHING"
)
_RECORD_WITH_EVENT = (
    "INSERT INTO callbacks (job_row, delivery_id, received_at, status, via, body, event_id, type, data)"
    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (job_row, delivery_id) DO NOTHING"
)


def record_callback(
    conn: sqlite3.Connection, job_row: int, cb: Callback, now: float, changed: Job | None = None
) -> int | None:
    """Keep one entry of a job's history; None when the job already has this delivery ID (a redelivery:
    nothing is stored). When the callback changed the job (`changed` is the job as it now stands), the entry
    is also the change's event, and its deliveries are queued in the same transaction (the outbox): the
    answer is how many."""
    if changed is None:
        recorded = conn.execute(_RECORD, (job_row, cb.delivery_id, now, cb.status.value, cb.via, cb.body))
        return 0 if recorded.rowcount else None
    event_id = new_event_id(now)
    kind = Event.type_for(changed.status)
    data = changed.to_public()
    recorded = conn.execute(
        _RECORD_WITH_EVENT,
        (job_row, cb.delivery_id, now, cb.status.value, cb.via, cb.body, event_id, kind, orjson.dumps(data)),
    )
    if not recorded.rowcount:
        return None
    assert recorded.lastrowid is not None
    event = Event(recorded.lastrowid, event_id, changed.source, changed.job_id, kind, now, data)
    return fan_out(conn, event, changed, now)


def ingest_callback(
    conn: sqlite3.Connection,
    source: str,
    cb: Callback,
    now: float,
    timeout_s: float,
    reconcile_after_s: float | None,
) -> IngestOutcome:
    """Store a callback and apply it to its job, creating the job if this is its first word."""
    # Most callbacks are a job's first (many providers call back once, when it is done): try the insert first.
    created = _insert_new(conn, new_job_from_callback(source, cb, now, timeout_s), reconcile_after_s)
    if created is not None:
        queued = record_callback(conn, created.row_id, cb, now, changed=created)  # no redelivery possible
        return IngestOutcome(created, duplicate=False, changed=True, queued=queued or 0)
    before = job_from_row(conn.execute(SELECT_JOB, (source, cb.job_id)).fetchone())
    # The job as it will stand is made from what is about to be written rather than read back: one statement
    # and one decode of the stored result fewer per callback.
    change = apply_callback(before, cb, now, timeout_s)
    queued = record_callback(conn, before.row_id, cb, now, changed=change.job if change.changed else None)
    if queued is None:  # a redelivery: already kept, changes nothing
        return IngestOutcome(before, duplicate=True, changed=False)
    _update(conn, change)
    return change.outcome(queued)


def _insert_new(conn: sqlite3.Connection, job: Job, reconcile_after_s: float | None) -> Job | None:
    """Insert a job first heard of through a callback; None when it is already known."""
    # Not `RETURNING id`: a statement with RETURNING costs a third more than one read by `rowcount` and
    # `lastrowid` (measured), and this is the biggest statement of the hottest path.
    inserted = conn.execute(
        "INSERT INTO jobs (source, job_id, status, result, error, created_at, updated_at,"
        " finished_at, deadline, reconcile_at, callbacks) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
        " ON CONFLICT (source, job_id) DO NOTHING",
        (
            job.source,
            job.job_id,
            job.status.value,
            dump(job.result),
            job.error,
            job.created_at,
            job.updated_at,
            job.finished_at,
            job.deadline,
            reconcile_at(job, reconcile_after_s),
            job.callbacks,
        ),
    )
    return _stored(job, inserted.lastrowid) if inserted.rowcount else None


def _update(conn: sqlite3.Connection, change: JobChange) -> None:
    """Write what a callback changed, one statement per kind of change: only the columns it moves."""
    job = change.job
    if change.step.status is None:
        conn.execute("UPDATE jobs SET callbacks = ? WHERE id = ?", (job.callbacks, job.row_id))
    elif job.final:
        conn.execute(
            "UPDATE jobs SET status = ?, late = ?, result = ?, error = ?, updated_at = ?, finished_at = ?,"
            " callbacks = ? WHERE id = ?",
            (
                job.status.value,
                job.late,
                dump(job.result),
                job.error,
                job.updated_at,
                job.finished_at,
                job.callbacks,
                job.row_id,
            ),
        )
    else:
        conn.execute(
            "UPDATE jobs SET status = ?, updated_at = ?, callbacks = ?, deadline = ? WHERE id = ?",
            (job.status.value, job.updated_at, job.callbacks, job.deadline, job.row_id),
        )


def register_job(
    conn: sqlite3.Connection,
    reg: Registration,
    now: float,
    timeout_s: float,
    reconcile_after_s: float | None,
) -> tuple[Job, bool]:
    """Create the registered job or merge into the known one; answer it and whether it was created."""
    row = conn.execute(SELECT_JOB, (reg.source, reg.job_id)).fetchone()
    before = None if row is None else job_from_row(row)
    change = merge_registration(before, reg, now, timeout_s)
    job = change.job
    # One statement for both: a registration's columns, over the known job's or in a new row.
    written = conn.execute(
        "INSERT INTO jobs (source, job_id, status, metadata, subscribers, timeout_s, created_at, updated_at,"
        " deadline, reconcile_at, callbacks) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
        " ON CONFLICT (source, job_id) DO UPDATE SET metadata = excluded.metadata,"
        " subscribers = excluded.subscribers, timeout_s = excluded.timeout_s, deadline = excluded.deadline,"
        " updated_at = excluded.updated_at",
        (
            job.source,
            job.job_id,
            job.status.value,
            orjson.dumps(job.metadata),
            orjson.dumps(list(job.subscribers)),
            job.timeout_s,
            job.created_at,
            job.updated_at,
            job.deadline,
            reconcile_at(job, reconcile_after_s),
            job.callbacks,
        ),
    )
    if before is None:
        return _stored(job, written.lastrowid), True
    # Subscribers added after the job finished still get its final event.
    backfill(conn, job, change.new_subscribers, now)
    return job, False


# --- the sweeper's --------------------------------------------------------------------------------------

# INDEXED BY pins the partial indexes: the planner would otherwise pick jobs_by_status (every open job).
OVERDUE_SQL = (
    f"SELECT {JOB_COLUMNS} FROM jobs INDEXED BY jobs_open_deadline"
    f" WHERE {OPEN} AND deadline <= ? ORDER BY deadline LIMIT ?"
)
RECONCILE_DUE_SQL = (
    f"SELECT {JOB_COLUMNS} FROM jobs INDEXED BY jobs_open_reconcile"
    f" WHERE reconcile_at IS NOT NULL AND {OPEN} AND reconcile_at <= ? ORDER BY reconcile_at LIMIT ?"
)


def time_out(conn: sqlite3.Connection, source: str, job_id: str, now: float) -> IngestOutcome | None:
    """Mark the job timed_out if it is still open and overdue now; None when a callback got there first."""
    row = conn.execute(SELECT_JOB, (source, job_id)).fetchone()
    change = None if row is None else timed_out(job_from_row(row), now)
    if change is None:
        return None
    job = change.job
    conn.execute(_TIME_OUT_JOB, _time_out_values(job))
    queued = record_callback(conn, job.row_id, time_out_entry(job), now, changed=job)  # always kept
    return change.outcome(queued or 0)


_SELECT_JOB_BY_ROW = f"SELECT {JOB_COLUMNS} FROM jobs WHERE id = ?"
# What a time-out moves (the early reconcile is not asked of a job that is over).
_TIME_OUT_JOB = (
    "UPDATE jobs SET status = ?, updated_at = ?, finished_at = ?, reconcile_at = NULL, callbacks = ?"
    " WHERE id = ?"
)


def _time_out_values(job: Job) -> tuple[object, ...]:
    return (job.status.value, job.updated_at, job.finished_at, job.callbacks, job.row_id)


def time_out_many(conn: sqlite3.Connection, jobs: Sequence[Job], now: float) -> list[IngestOutcome | None]:
    """`time_out` of each job, in the one transaction of the caller's batch. Each is read again by its row
    (the overdue read just had its page in hand), decided, then written: one statement for the jobs and one
    for the history entries of the events that queue nothing (most: no subscriber wants them); an event
    with deliveries is recorded as `time_out` records it."""
    changes: dict[int, JobChange] = {}
    for job in {job.row_id: job for job in jobs}.values():  # each row once
        row = conn.execute(_SELECT_JOB_BY_ROW, (job.row_id,)).fetchone()
        # The row may hold another job by now (its own purged, the row id reused): that one is left alone.
        if row is None or (row[1], row[2]) != (job.source, job.job_id):
            continue
        if (change := timed_out(job_from_row(row), now)) is not None:
            changes[job.row_id] = change
    conn.executemany(_TIME_OUT_JOB, [_time_out_values(change.job) for change in changes.values()])
    everyone, quiet, queued = recipients(conn), [], {}
    for row_id, change in changes.items():
        timed = change.job
        entry = time_out_entry(timed)
        if targets_for(Event.type_for(timed.status), timed, everyone):
            queued[row_id] = record_callback(conn, row_id, entry, now, changed=timed) or 0
            continue
        event = (new_event_id(now), Event.type_for(timed.status), orjson.dumps(timed.to_public()))
        quiet.append((row_id, entry.delivery_id, now, entry.status.value, entry.via, entry.body, *event))
    conn.executemany(_RECORD_WITH_EVENT, quiet)
    # A job listed twice is timed out once: its first listing has the answer.
    return [
        changes.pop(j.row_id).outcome(queued.get(j.row_id, 0)) if j.row_id in changes else None for j in jobs
    ]


def extend_deadline(conn: sqlite3.Connection, source: str, job_id: str, deadline: float) -> bool:
    """Move an open job's deadline (the provider says it is still running)."""
    return bool(
        conn.execute(
            f"UPDATE jobs SET deadline = ? WHERE source = ? AND job_id = ? AND {OPEN}",
            (deadline, source, job_id),
        ).rowcount
    )


def clear_reconcile(conn: sqlite3.Connection, source: str, job_id: str) -> None:
    """The early reconcile is asked once: forget it whatever the answer."""
    conn.execute("UPDATE jobs SET reconcile_at = NULL WHERE source = ? AND job_id = ?", (source, job_id))


def purge_finished(conn: sqlite3.Connection, before: float, limit: int) -> int:
    """Delete up to `limit` jobs finished before `before`, with everything stored about them."""
    rows = conn.execute(
        "SELECT id, source, job_id FROM jobs WHERE finished_at IS NOT NULL AND finished_at < ?"
        " ORDER BY finished_at LIMIT ?",
        (before, limit),
    ).fetchall()
    for job_row, source, job_id in rows:
        conn.execute("DELETE FROM callbacks WHERE job_row = ?", (job_row,))
        conn.execute(
            "DELETE FROM delivery_attempts WHERE delivery_id IN"
            " (SELECT id FROM deliveries WHERE source = ? AND job_id = ?)",
            (source, job_id),
        )
        conn.execute("DELETE FROM deliveries WHERE source = ? AND job_id = ?", (source, job_id))
    conn.executemany("DELETE FROM jobs WHERE id = ?", [(row[0],) for row in rows])
    return len(rows)
