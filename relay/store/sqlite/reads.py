"""What SQLite reads select, and rows mapped to models (for the reader and for the writer's read-backs)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import orjson

from relay.models import Delivery, DeliveryAttempt, DeliveryStatus, Job, Status, Subscription

__all__ = [
    "GET_DELIVERY_SQL",
    "GET_SUBSCRIPTION_SQL",
    "JOB_COLUMNS",
    "LIST_SUBSCRIPTIONS_SQL",
    "SELECT_JOB",
    "attempt_from_row",
    "attempts_sql",
    "delivery_from_row",
    "job_from_row",
    "list_deliveries_sql",
    "subscription_from_row",
]

JOB_COLUMNS = (
    "id, source, job_id, status, result, error, late, metadata, created_at, updated_at, "
    "finished_at, deadline, callbacks, subscribers, timeout_s"
)
SELECT_JOB = f"SELECT {JOB_COLUMNS} FROM jobs WHERE source = ? AND job_id = ?"


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
    )


SUBSCRIPTION_COLUMNS = (
    "id, url, source, events, secret, previous_secret, previous_secret_until, created_at, disabled_at,"
    " disabled_reason"
)
LIST_SUBSCRIPTIONS_SQL = f"SELECT {SUBSCRIPTION_COLUMNS} FROM subscriptions ORDER BY created_at, id"
GET_SUBSCRIPTION_SQL = f"SELECT {SUBSCRIPTION_COLUMNS} FROM subscriptions WHERE id = ?"

DELIVERY_COLUMNS = (
    "id, event_row, event_id, event_type, source, job_id, subscription_id, url, endpoint, status, attempts,"
    " failures, quick_retried, next_attempt_at, created_at, updated_at, delivered_at, last_status_code,"
    " last_error"
)
GET_DELIVERY_SQL = f"SELECT {DELIVERY_COLUMNS} FROM deliveries WHERE id = ?"
ATTEMPT_COLUMNS = "delivery_id, attempted_at, status_code, latency_ms, error, response"


def subscription_from_row(row: Any) -> Subscription:
    return Subscription(
        id=row[0],
        url=row[1],
        source=row[2],
        events=None if row[3] is None else tuple(orjson.loads(row[3])),
        secret=row[4],
        previous_secret=row[5],
        previous_secret_until=row[6],
        created_at=row[7],
        disabled_at=row[8],
        disabled_reason=row[9],
    )


def delivery_from_row(row: Any, history: Sequence[DeliveryAttempt] = ()) -> Delivery:
    return Delivery(
        id=row[0],
        event_row=row[1],
        event_id=row[2],
        event_type=row[3],
        source=row[4],
        job_id=row[5],
        subscription_id=row[6],
        url=row[7],
        endpoint=row[8],
        status=DeliveryStatus(row[9]),
        attempts=row[10],
        failures=row[11],
        quick_retried=bool(row[12]),
        next_attempt_at=row[13],
        created_at=row[14],
        updated_at=row[15],
        delivered_at=row[16],
        last_status_code=row[17],
        last_error=row[18],
        history=tuple(history),
    )


def attempt_from_row(row: Any) -> DeliveryAttempt:
    """An attempt from `ATTEMPT_COLUMNS` (the first column, its delivery, is the caller's)."""
    return DeliveryAttempt(at=row[1], status_code=row[2], latency_ms=row[3], error=row[4], response=row[5])


def list_deliveries_sql(
    *,
    status: str | None,
    source: str | None,
    job_id: str | None,
    subscription_id: str | None,
    before: int | None,
    limit: int,
) -> tuple[str, list[Any]]:
    """The newest-first page query for the given filters."""
    clauses, params = [], []
    for clause, value in (
        ("status = ?", status),
        ("source = ?", source),
        ("job_id = ?", job_id),
        ("subscription_id = ?", subscription_id),
        ("id < ?", before),
    ):
        if value is not None:
            clauses.append(clause)
            params.append(value)
    where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
    return f"SELECT {DELIVERY_COLUMNS} FROM deliveries {where} ORDER BY id DESC LIMIT ?", [*params, limit]


def attempts_sql(count: int) -> str:
    """The attempts of `count` deliveries (ids bound as parameters), oldest first."""
    marks = ", ".join("?" * count)
    return f"SELECT {ATTEMPT_COLUMNS} FROM delivery_attempts WHERE delivery_id IN ({marks}) ORDER BY id"
