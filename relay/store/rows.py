"""Jobs, their history and their events: the columns and queries, and rows mapped to models; the same for
every backend (JSON kept as orjson bytes; SQL with `?` placeholders, which PostgreSQL numbers with
`relay.store.numbered.numbered`)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import orjson

from relay.models import CallbackRecord, Event, Job, Status

__all__ = [
    "BACKFILL_EVENTS_SQL",
    "COUNT_JOBS_BY_STATUS_SQL",
    "JOB_COLUMNS",
    "LIST_CALLBACKS_SQL",
    "LIST_EVENTS_SQL",
    "OPEN",
    "SELECT_JOB",
    "callback_records",
    "counts_by_status",
    "dump",
    "events_from_rows",
    "job_from_row",
    "list_jobs_sql",
    "listed_events",
    "page_sql",
]

JOB_COLUMNS = (
    "id, source, job_id, status, result, error, late, metadata, created_at, updated_at, "
    "finished_at, deadline, callbacks, subscribers, timeout_s, progress"
)
SELECT_JOB = f"SELECT {JOB_COLUMNS} FROM jobs WHERE source = ? AND job_id = ?"
# A job still running: what the sweeper times out and reconciles, and what a deadline may be moved for.
OPEN = "status IN ('pending', 'running')"

# A job's rows of another table, found by its (source, job_id).
_OF_JOB = "job_row = (SELECT id FROM jobs WHERE source = ? AND job_id = ?)"
# Bound: source, job_id.
LIST_CALLBACKS_SQL = (
    f"SELECT delivery_id, received_at, status, via FROM callbacks WHERE {_OF_JOB} ORDER BY id"
)
# Bound: source, job_id, after.
LIST_EVENTS_SQL = (
    f"SELECT id, event_id, type, received_at, data FROM callbacks"
    f" WHERE {_OF_JOB} AND id > ? AND event_id IS NOT NULL ORDER BY id"
)
COUNT_JOBS_BY_STATUS_SQL = "SELECT status, count(*) FROM jobs GROUP BY status"
# A job's events, without their data (bound: the job's row id); what a late per-job subscriber is sent.
BACKFILL_EVENTS_SQL = (
    "SELECT id, event_id, type, received_at FROM callbacks"
    " WHERE job_row = ? AND event_id IS NOT NULL ORDER BY id"
)


def dump(value: Any) -> bytes | None:
    """A JSON column's value; None stays NULL."""
    return None if value is None else orjson.dumps(value)


def job_from_row(row: Any) -> Job:
    """The job of a row selected with `JOB_COLUMNS`."""
    return Job(
        row_id=row[0],
        source=row[1],
        job_id=row[2],
        status=Status(row[3]),
        result=None if row[4] is None else orjson.loads(row[4]),
        error=row[5],
        late=bool(row[6]),
        metadata=orjson.loads(row[7]),
        created_at=row[8],
        updated_at=row[9],
        finished_at=row[10],
        deadline=row[11],
        callbacks=row[12],
        subscribers=tuple(orjson.loads(row[13])),
        timeout_s=row[14],
        progress=None if row[15] is None else orjson.loads(row[15]),
    )


def page_sql(select: str, filters: Iterable[tuple[str, Any]], limit: int) -> tuple[str, list[Any]]:
    """A newest-first page query: `select` (`SELECT ... FROM table`) narrowed by each `(clause, value)` of
    `filters` whose value is not None, and its parameters."""
    clauses, params = [], []
    for clause, value in filters:
        if value is not None:
            clauses.append(clause)
            params.append(value)
    where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
    return f"{select} {where} ORDER BY id DESC LIMIT ?", [*params, limit]


def list_jobs_sql(
    *, source: str | None, status: Status | None, before: int | None, limit: int
) -> tuple[str, list[Any]]:
    """The newest-first page query of jobs for the given filters, and its parameters."""
    status_value = None if status is None else status.value
    filters = (("source = ?", source), ("status = ?", status_value), ("id < ?", before))
    return page_sql(f"SELECT {JOB_COLUMNS} FROM jobs", filters, limit)


def callback_records(rows: Iterable[Any]) -> list[CallbackRecord]:
    """A job's history from `LIST_CALLBACKS_SQL`."""
    return [CallbackRecord(r[0], r[1], Status(r[2]), r[3]) for r in rows]


def listed_events(source: str, job_id: str, rows: Iterable[Any]) -> list[Event]:
    """A job's events from `LIST_EVENTS_SQL`."""
    return [Event(r[0], r[1], source, job_id, r[2], r[3], orjson.loads(r[4])) for r in rows]


def counts_by_status(rows: Iterable[Any]) -> dict[str, int]:
    """How many jobs each status has, from `COUNT_JOBS_BY_STATUS_SQL`."""
    return {str(status): int(n) for status, n in rows}


def events_from_rows(job: Job, rows: Iterable[Any]) -> list[Event]:
    """`job`'s events from `BACKFILL_EVENTS_SQL` (their data left out: a delivery reads it when sent)."""
    return [Event(r[0], r[1], job.source, job.job_id, r[2], r[3], {}) for r in rows]
