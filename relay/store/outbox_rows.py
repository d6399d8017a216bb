"""Subscriptions, deliveries and attempts: their columns, rows mapped to models, and the deliveries' page
query; the same for every backend (a backend numbers the `?` placeholders its own way)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import orjson

from relay.domain.outbox import UNSETTLED_STATUSES, settlement_of
from relay.outbox_models import (
    AttemptResult,
    Delivery,
    DeliveryAttempt,
    DeliveryStatus,
    Subscription,
    SubscriptionChange,
    Unchanged,
)
from relay.store.rows import page_sql

__all__ = [
    "ATTEMPT_COLUMNS",
    "DELIVERY_COLUMNS",
    "DISABLED_THROUGH_API",
    "GET_SUBSCRIPTION_SQL",
    "LIST_SUBSCRIPTIONS_SQL",
    "MOVE_DELIVERIES_SQL",
    "SUBSCRIPTION_COLUMNS",
    "UNSETTLED",
    "attempt_from_row",
    "attempt_values",
    "delivery_from_row",
    "list_deliveries_sql",
    "settlement_values",
    "subscription_change_sql",
    "subscription_from_row",
    "with_attempts",
]

SUBSCRIPTION_COLUMNS = (
    "id, url, source, events, secret, previous_secret, previous_secret_until, created_at, disabled_at,"
    " disabled_reason"
)
DELIVERY_COLUMNS = (
    "id, event_row, event_id, event_type, source, job_id, subscription_id, url, endpoint, status, attempts,"
    " failures, quick_retried, next_attempt_at, created_at, updated_at, delivered_at, last_status_code,"
    " last_error"
)
ATTEMPT_COLUMNS = "delivery_id, attempted_at, status_code, latency_ms, error, response"

LIST_SUBSCRIPTIONS_SQL = f"SELECT {SUBSCRIPTION_COLUMNS} FROM subscriptions ORDER BY created_at, id"
GET_SUBSCRIPTION_SQL = f"SELECT {SUBSCRIPTION_COLUMNS} FROM subscriptions WHERE id = ?"
# A subscription's new URL, for its deliveries not yet delivered (bound: the URL, its endpoint, the
# subscription's id): retries and `POST /v1/deliveries/{id}/retry` go there; a delivered one keeps its own.
MOVE_DELIVERIES_SQL = (
    "UPDATE deliveries SET url = ?, endpoint = ? WHERE subscription_id = ? AND status <> 'delivered'"
)
# `disabled_reason` of a subscription disabled by `PATCH ... {"enabled": false}`.
DISABLED_THROUGH_API = "disabled through the API"

# `UNSETTLED_STATUSES` as a list for `status IN ...`.
UNSETTLED = f"({', '.join(repr(status.value) for status in UNSETTLED_STATUSES)})"


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


def subscription_change_sql(change: SubscriptionChange) -> tuple[str, list[Any]] | None:
    """`UPDATE subscriptions SET ... WHERE id = ?` for the columns `change` sets, and their values (the
    subscription's id is bound after them); None when it sets none. `enabled=False` is each backend's
    `disable`, which also gives up the unsent deliveries."""
    sets: list[str] = []
    values: list[Any] = []
    if not isinstance(change.url, Unchanged):
        sets.append("url = ?")
        values.append(change.url)
    if not isinstance(change.source, Unchanged):
        sets.append("source = ?")
        values.append(change.source)
    if not isinstance(change.events, Unchanged):
        sets.append("events = ?")
        values.append(None if change.events is None else orjson.dumps(list(change.events)))
    if change.enabled is True:
        sets.append("disabled_at = NULL, disabled_reason = NULL")
    if not sets:
        return None
    return f"UPDATE subscriptions SET {', '.join(sets)} WHERE id = ?", values


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


def with_attempts(rows: Iterable[Any], attempt_rows: Iterable[Any]) -> list[Delivery]:
    """The deliveries of `rows` (selected with `DELIVERY_COLUMNS`), each with its attempts among
    `attempt_rows` (selected with `ATTEMPT_COLUMNS`, oldest first)."""
    selected = list(rows)
    history: dict[int, list[DeliveryAttempt]] = {row[0]: [] for row in selected}
    for attempt in attempt_rows:
        history[attempt[0]].append(attempt_from_row(attempt))
    return [delivery_from_row(row, history[row[0]]) for row in selected]


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
    filters = (
        ("status = ?", status),
        ("source = ?", source),
        ("job_id = ?", job_id),
        ("subscription_id = ?", subscription_id),
        ("id < ?", before),
    )
    return page_sql(f"SELECT {DELIVERY_COLUMNS} FROM deliveries", filters, limit)


def attempt_values(result: AttemptResult) -> tuple[Any, ...]:
    """An attempt's row, in `ATTEMPT_COLUMNS` order."""
    attempt = result.attempt
    return (
        result.delivery_id,
        attempt.at,
        attempt.status_code,
        attempt.latency_ms,
        attempt.error,
        attempt.response,
    )


def settlement_values(result: AttemptResult) -> tuple[Any, ...]:
    """What settling a delivery binds: status, next attempt, updated, last status code, last error, delivered,
    failures added, quick retried; then the delivery's id and the claim's token."""
    change = settlement_of(result)
    return (
        change.status.value,
        change.next_attempt_at,
        change.updated_at,
        result.attempt.status_code,
        result.attempt.error,
        change.delivered_at,
        change.failures_added,
        change.quick_retried,
        result.delivery_id,
        result.token,
    )
