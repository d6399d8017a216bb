"""The sweeper's SQL for SQLite: overdue jobs, time-outs, deadline extensions, retention."""

from __future__ import annotations

import sqlite3

from relay.domain import jobs
from relay.models import IngestOutcome
from relay.store.sqlite_jobs import JOB_COLUMNS, SELECT_JOB, job_from_row, record_callback

__all__ = ["clear_reconcile", "extend_deadline", "purge_finished", "time_out"]

_OPEN = "status IN ('pending', 'running')"
# INDEXED BY pins the partial indexes: the planner would otherwise pick jobs_by_status (every open job).
OVERDUE_SQL = (
    f"SELECT {JOB_COLUMNS} FROM jobs INDEXED BY jobs_open_deadline"
    f" WHERE {_OPEN} AND deadline <= ? ORDER BY deadline LIMIT ?"
)
RECONCILE_DUE_SQL = (
    f"SELECT {JOB_COLUMNS} FROM jobs INDEXED BY jobs_open_reconcile"
    f" WHERE reconcile_at IS NOT NULL AND {_OPEN} AND reconcile_at <= ? ORDER BY reconcile_at LIMIT ?"
)


def time_out(conn: sqlite3.Connection, source: str, job_id: str, now: float) -> IngestOutcome | None:
    """Mark the job timed_out if it is still open and overdue now; None when a callback got there first."""
    row = conn.execute(SELECT_JOB, (source, job_id)).fetchone()
    change = None if row is None else jobs.time_out(job_from_row(row), now)
    if change is None:
        return None
    job = change.job
    conn.execute(
        "UPDATE jobs SET status = ?, updated_at = ?, finished_at = ?, reconcile_at = NULL, callbacks = ?"
        " WHERE id = ?",
        (job.status.value, job.updated_at, job.finished_at, job.callbacks, job.row_id),
    )
    queued = record_callback(conn, job.row_id, jobs.time_out_entry(job), now, changed=job)  # always kept
    return change.outcome(queued or 0)


def extend_deadline(conn: sqlite3.Connection, source: str, job_id: str, deadline: float) -> bool:
    """Move an open job's deadline (the provider says it is still running)."""
    return bool(
        conn.execute(
            f"UPDATE jobs SET deadline = ? WHERE source = ? AND job_id = ? AND {_OPEN}",
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
