"""Time-outs for PostgreSQL: the sweeper's writes, one job or a whole round's in one transaction.

Each function runs inside the caller's transaction, locks the rows first and applies the rule of
relay/domain/jobs.py to each job as it stands then, so a callback that got there first wins.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

import orjson

from relay.domain.jobs import JobChange, new_event_id, time_out_entry
from relay.domain.jobs import time_out as timed_out
from relay.domain.outbox import Target, targets_for
from relay.models import Callback, Event, IngestOutcome, Job
from relay.store.postgres import deliveries, subscriptions
from relay.store.postgres.jobs import LOCK_JOB, MOVED, record_entry, write_job
from relay.store.postgres.notify import job_payload, notify_job, notify_job_sql
from relay.store.rows import JOB_COLUMNS, job_from_row

if TYPE_CHECKING:
    from asyncpg import Connection

__all__ = ["time_out", "time_out_many"]

# A time-out's: the early reconcile is not asked of a job that is over.
_TIME_OUT_JOB = (
    f"UPDATE jobs SET ({MOVED}, reconcile_at) = ($2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, NULL)"
    " WHERE id = $1"
)


async def time_out(conn: Connection, source: str, job_id: str, now: float) -> IngestOutcome | None:
    """Mark the job timed_out if it is still open and overdue now; None when a callback got there first."""
    row = await conn.fetchrow(LOCK_JOB, source, job_id)
    change: JobChange | None = None if row is None else timed_out(job_from_row(row), now)
    if change is None:
        return None
    await write_job(conn, change.job, _TIME_OUT_JOB)
    queued = await record_entry(conn, change.job.row_id, time_out_entry(change.job), now, change.job)
    await notify_job(conn, source, job_id)
    return change.outcome(queued or 0)


# The batched time-out's statements: every job of a sweeper round in one transaction, a statement per step.
# In id order, so that two sweepers locking the same jobs cannot deadlock.
_LOCK_JOBS = f"SELECT {JOB_COLUMNS} FROM jobs WHERE id = ANY($1::bigint[]) ORDER BY id FOR UPDATE"
# The columns `relay.domain.jobs.time_out` moves (the contract suite compares the batch with `time_out`).
_TIME_OUT_JOBS = (
    "UPDATE jobs SET (status, updated_at, finished_at, callbacks, reconcile_at) ="
    " (u.status, u.updated_at, u.finished_at, u.callbacks, NULL)"
    " FROM unnest($1::bigint[], $2::text[], $3::float8[], $4::float8[], $5::integer[])"
    " AS u (id, status, updated_at, finished_at, callbacks) WHERE jobs.id = u.id"
)
_RECORD_MANY = (
    "INSERT INTO callbacks (job_row, delivery_id, received_at, status, via, body, event_id, type, data)"
    " SELECT u.job_row, u.delivery_id, $9, u.status, u.via, u.body, u.event_id, u.type, u.data"
    " FROM unnest($1::bigint[], $2::text[], $3::text[], $4::text[], $5::bytea[], $6::text[], $7::text[],"
    " $8::bytea[]) AS u (job_row, delivery_id, status, via, body, event_id, type, data)"
    " ON CONFLICT (job_row, delivery_id) DO NOTHING RETURNING id, job_row"
)
# What `notify_job` sends, for many jobs in one statement.
_NOTIFY_JOBS = f"SELECT {notify_job_sql('payload')} FROM unnest($1::text[]) AS payload"
R = TypeVar("R")


async def time_out_many(conn: Connection, overdue: Sequence[Job], now: float) -> list[IngestOutcome | None]:
    """`time_out` of each job, in the caller's transaction: the rows locked at once, the rule of
    relay/domain/jobs.py applied to each, then one statement each for the jobs, their history entries and
    events, their deliveries (one per set of targets) and the notifications."""
    keys = {job.row_id: (job.source, job.job_id) for job in overdue}
    rows = await conn.fetch(_LOCK_JOBS, list(keys))
    # A row that holds another job by now (its own purged) is left alone.
    locked = [job_from_row(row) for row in rows if (row[1], row[2]) == keys[row[0]]]
    changes = [change for job in locked if (change := timed_out(job, now)) is not None]
    if not changes:
        return [None] * len(overdue)
    jobs = [change.job for change in changes]
    moved = [(job.row_id, job.status.value, job.updated_at, job.finished_at, job.callbacks) for job in jobs]
    # Whatever needs no answer from the database is made while the UPDATE runs.
    _, (entries, record, payloads) = await _meanwhile(
        conn.execute(_TIME_OUT_JOBS, *_columns(moved)), lambda: _writes(jobs, now)
    )
    recorded = await conn.fetch(_RECORD_MANY, *record, now)
    rows_of = {job_row: row for row, job_row in recorded}
    events = [entry.event(rows_of[entry.job.row_id], now) for entry in entries]
    queued = await _queue_many(conn, events, jobs, now)
    await conn.execute(_NOTIFY_JOBS, payloads)
    outcomes = {c.job.row_id: c.outcome(n) for c, n in zip(changes, queued, strict=True)}
    return [outcomes.pop(job.row_id, None) for job in overdue]  # a job listed twice is timed out once


def _columns(rows: Sequence[tuple[Any, ...]]) -> list[list[Any]]:
    """Rows of values as the columns `unnest` takes."""
    return [list(column) for column in zip(*rows, strict=True)]


@dataclass(frozen=True, slots=True)
class _Entry:
    """A time-out's history entry with its event, made as `_record` makes them."""

    job: Job
    entry: Callback
    event_id: str
    data: dict[str, Any]

    @property
    def kind(self) -> str:
        return Event.type_for(self.job.status)

    def values(self) -> tuple[Any, ...]:
        """What `_RECORD_MANY` stores of it (with the time, bound once for all)."""
        cb, job = self.entry, self.job
        data = orjson.dumps(self.data)
        return (job.row_id, cb.delivery_id, cb.status.value, cb.via, cb.body, self.event_id, self.kind, data)

    def event(self, row: int, now: float) -> Event:
        """The event, once its entry is stored as `row`."""
        return Event(row, self.event_id, self.job.source, self.job.job_id, self.kind, now, self.data)


def _writes(jobs: Sequence[Job], now: float) -> tuple[list[_Entry], list[list[Any]], list[str]]:
    """Each job's entry, the columns `_RECORD_MANY` stores of them, and the jobs' notification payloads."""
    entries = [_Entry(job, time_out_entry(job), new_event_id(now), job.to_public()) for job in jobs]
    record = _columns([entry.values() for entry in entries])
    return entries, record, [job_payload(job.source, job.job_id) for job in jobs]


async def _meanwhile(query: Awaitable[Any], work: Callable[[], R]) -> tuple[Any, R]:
    """Send `query` and do `work` while the database runs it; answer both results."""
    sent = asyncio.ensure_future(query)
    try:
        await asyncio.sleep(0)  # one turn of the loop puts the query on the wire
        done = work()
    finally:
        answer = await sent
    return answer, done


async def _queue_many(
    conn: Connection, events: Sequence[Event], jobs: Sequence[Job], now: float
) -> list[int]:
    """Queue each job's event for its targets as `queue_deliveries` does, with one statement per set of
    targets (the events of a round mostly share theirs); answer how many each event queued."""
    everyone = await subscriptions.recipients(conn)
    groups: dict[tuple[Target, ...], list[Event]] = {}
    queued = []
    for event, job in zip(events, jobs, strict=True):
        targets = tuple(targets_for(event.type, job, everyone))
        groups.setdefault(targets, []).append(event)
        queued.append(len(targets))  # a new event's rows are all new
    for targets, grouped in groups.items():
        await deliveries.insert(conn, grouped, targets, now)
    return queued
