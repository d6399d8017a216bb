"""The sweeper's SQL for SQLite: the overdue reads, time-outs (one job, or a round's in the caller's batch),
deadlines moved, and retention. Each function runs in the writer's transaction."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence

import orjson

from relay.domain.jobs import JobChange, new_event_id, time_out_entry
from relay.domain.jobs import time_out as timed_out
from relay.domain.outbox import targets_for
from relay.models import Event, IngestOutcome, Job
from relay.store.file_rows import PURGE_FILES_SQL
from relay.store.rows import JOB_COLUMNS, OPEN, SELECT_JOB, job_from_row
from relay.store.sqlite.jobs import RECORD_WITH_EVENT, record_callback
from relay.store.sqlite.subscriptions import recipients

__all__ = [
    "OVERDUE_SQL",
    "RECONCILE_DUE_SQL",
    "clear_reconcile",
    "extend_deadline",
    "purge_finished",
    "time_out",
    "time_out_many",
]

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
    conn.executemany(RECORD_WITH_EVENT, quiet)
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
        conn.execute(PURGE_FILES_SQL, (job_row,))  # their bytes are deleted by the archiver, then the rows
    conn.executemany("DELETE FROM jobs WHERE id = ?", [(row[0],) for row in rows])
    return len(rows)
