"""Jobs for SQLite: the SQL of a callback, a registration and a history entry (the sweeper's is in sweeps.py).

The writes run on the group-commit writer's connection, inside the batch's transaction; what they write is
what relay/domain/jobs.py answers. Rows are mapped to jobs in relay/store/rows.py.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence

import orjson

from relay.domain.archive import with_files
from relay.domain.jobs import (
    JobChange,
    apply_callback,
    merge_registration,
    new_event_id,
    new_job_from_callback,
    reconcile_at,
)
from relay.file_models import ArchivedFile
from relay.models import Callback, Event, IngestOutcome, Job, Registration
from relay.store.file_rows import INSERT_FILE_SQL, insert_values
from relay.store.rows import SELECT_JOB, dump, job_from_row
from relay.store.sqlite.outbox import backfill, fan_out

__all__ = ["RECORD_WITH_EVENT", "ingest_callback", "record_callback", "register_job"]


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
RECORD_WITH_EVENT = (
    "INSERT INTO callbacks (job_row, delivery_id, received_at, status, via, body, event_id, type, data)"
    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (job_row, delivery_id) DO NOTHING"
)


def record_callback(
    conn: sqlite3.Connection,
    job_row: int,
    cb: Callback,
    now: float,
    changed: Job | None = None,
    kind: str | None = None,
) -> int | None:
    """Keep one entry of a job's history; None when the job already has this delivery ID (a redelivery:
    nothing is stored). When the callback changed the job (`changed` is the job as it now stands), the entry
    is also the change's event (`kind`, by default its status's), and its deliveries are queued in the same
    transaction (the outbox): the answer is how many."""
    if changed is None:
        recorded = conn.execute(_RECORD, (job_row, cb.delivery_id, now, cb.status.value, cb.via, cb.body))
        return 0 if recorded.rowcount else None
    event_id = new_event_id(now)
    kind = kind or Event.type_for(changed.status)
    data = changed.to_public()
    recorded = conn.execute(
        RECORD_WITH_EVENT,
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
    files: Sequence[ArchivedFile] = (),
) -> IngestOutcome:
    """Store a callback and apply it to its job, creating the job if this is its first word. `files` (found
    in the callback's result) are queued for archiving when the callback makes the job final."""
    # Most callbacks are a job's first (many providers call back once, when it is done): try the insert first.
    created = _insert_new(conn, new_job_from_callback(source, cb, now, timeout_s), reconcile_after_s)
    if created is not None:
        with_files(created, files)
        queued = record_callback(conn, created.row_id, cb, now, changed=created)  # no redelivery possible
        _queue_files(conn, created, now)
        return IngestOutcome(created, duplicate=False, changed=True, queued=queued or 0)
    before = job_from_row(conn.execute(SELECT_JOB, (source, cb.job_id)).fetchone())
    # The job as it will stand is made from what is about to be written rather than read back: one statement
    # and one decode of the stored result fewer per callback.
    change = apply_callback(before, cb, now, timeout_s)
    if change.step.changed:
        with_files(change.job, files)  # before the entry: its event carries them
    queued = record_callback(
        conn, before.row_id, cb, now, change.job if change.changed else None, change.event_type
    )
    if queued is None:  # a redelivery: already kept, changes nothing
        return IngestOutcome(before, duplicate=True, changed=False)
    _update(conn, change)
    _queue_files(conn, change.job, now)
    return change.outcome(queued)


def _queue_files(conn: sqlite3.Connection, job: Job, now: float) -> None:
    """Queue the files a job just made final carries, due now, in the transaction that made it final."""
    if job.files:
        conn.executemany(INSERT_FILE_SQL, insert_values(job.row_id, job.source, job.files, now))


def _insert_new(conn: sqlite3.Connection, job: Job, reconcile_after_s: float | None) -> Job | None:
    """Insert a job first heard of through a callback; None when it is already known."""
    # Not `RETURNING id`: a statement with RETURNING costs a third more than one read by `rowcount` and
    # `lastrowid` (measured), and this is the biggest statement of the hottest path.
    inserted = conn.execute(
        "INSERT INTO jobs (source, job_id, status, result, error, created_at, updated_at, finished_at,"
        " deadline, reconcile_at, callbacks, progress) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
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
            dump(job.progress),
        ),
    )
    return _stored(job, inserted.lastrowid) if inserted.rowcount else None


def _update(conn: sqlite3.Connection, change: JobChange) -> None:
    """Write what a callback changed, one statement per kind of change: only the columns it moves."""
    job = change.job
    if change.progressed:
        conn.execute(
            "UPDATE jobs SET progress = ?, updated_at = ?, callbacks = ? WHERE id = ?",
            (dump(job.progress), job.updated_at, job.callbacks, job.row_id),
        )
    elif change.step.status is None:
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
            "UPDATE jobs SET status = ?, updated_at = ?, callbacks = ?, deadline = ?, progress = ?"
            " WHERE id = ?",
            (job.status.value, job.updated_at, job.callbacks, job.deadline, dump(job.progress), job.row_id),
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
