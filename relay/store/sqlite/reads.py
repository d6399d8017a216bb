"""What SQLite reads select, and rows mapped to models (for the reader and for the writer's read-backs)."""

from __future__ import annotations

from relay.store.outbox_rows import (
    ATTEMPT_COLUMNS,
    DELIVERY_COLUMNS,
    SUBSCRIPTION_COLUMNS,
    attempt_from_row,
    delivery_from_row,
    list_deliveries_sql,
    subscription_from_row,
)
from relay.store.rows import JOB_COLUMNS, job_from_row

__all__ = [
    "ATTEMPT_COLUMNS",
    "DELIVERY_COLUMNS",
    "GET_DELIVERY_SQL",
    "GET_SUBSCRIPTION_SQL",
    "JOB_COLUMNS",
    "LIST_SUBSCRIPTIONS_SQL",
    "SELECT_JOB",
    "SUBSCRIPTION_COLUMNS",
    "attempt_from_row",
    "attempts_sql",
    "delivery_from_row",
    "job_from_row",
    "list_deliveries_sql",
    "subscription_from_row",
]

SELECT_JOB = f"SELECT {JOB_COLUMNS} FROM jobs WHERE source = ? AND job_id = ?"


LIST_SUBSCRIPTIONS_SQL = f"SELECT {SUBSCRIPTION_COLUMNS} FROM subscriptions ORDER BY created_at, id"
GET_SUBSCRIPTION_SQL = f"SELECT {SUBSCRIPTION_COLUMNS} FROM subscriptions WHERE id = ?"

GET_DELIVERY_SQL = f"SELECT {DELIVERY_COLUMNS} FROM deliveries WHERE id = ?"


def attempts_sql(count: int) -> str:
    """The attempts of `count` deliveries (ids bound as parameters), oldest first."""
    marks = ", ".join("?" * count)
    return f"SELECT {ATTEMPT_COLUMNS} FROM delivery_attempts WHERE delivery_id IN ({marks}) ORDER BY id"
