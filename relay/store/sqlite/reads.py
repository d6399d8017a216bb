"""SQLite's own reads: a delivery by id, and the attempts of a page of deliveries (the shared queries and row
mappings are in relay/store/rows.py and relay/store/outbox_rows.py)."""

from __future__ import annotations

from relay.store.outbox_rows import ATTEMPT_COLUMNS, DELIVERY_COLUMNS

__all__ = ["GET_DELIVERY_SQL", "attempts_sql"]

GET_DELIVERY_SQL = f"SELECT {DELIVERY_COLUMNS} FROM deliveries WHERE id = ?"


def attempts_sql(count: int) -> str:
    """The attempts of `count` deliveries (ids bound as parameters), oldest first."""
    marks = ", ".join("?" * count)
    return f"SELECT {ATTEMPT_COLUMNS} FROM delivery_attempts WHERE delivery_id IN ({marks}) ORDER BY id"
