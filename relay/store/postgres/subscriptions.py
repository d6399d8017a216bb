"""Subscriptions for PostgreSQL: their writes, and the enabled ones as fan-out matches them."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import orjson

from relay.domain.outbox import Recipient, recipient
from relay.outbox_models import Subscription, SubscriptionChange, endpoint_of
from relay.store.numbered import numbered
from relay.store.outbox_rows import (
    DISABLED_THROUGH_API,
    GET_SUBSCRIPTION_SQL,
    MOVE_DELIVERIES_SQL,
    SUBSCRIPTION_COLUMNS,
    subscription_change_sql,
    subscription_from_row,
)

if TYPE_CHECKING:
    from asyncpg import Connection

__all__ = [
    "create_subscription",
    "delete_subscription",
    "disable",
    "recipient_from_row",
    "recipients",
    "rotate_secret",
    "update_subscription",
]

_MOVE_DELIVERIES_SQL = numbered(MOVE_DELIVERIES_SQL)
_GET_SUBSCRIPTION_SQL = numbered(GET_SUBSCRIPTION_SQL)


def _event_types(stored: Any) -> list[str] | None:
    """A subscription's `events` as stored (JSON text or bytes), or None for every final event."""
    return None if stored is None else list(orjson.loads(stored))


async def recipients(conn: Connection) -> list[Recipient]:
    """Every enabled subscription, read in the caller's transaction (so its own changes count)."""
    rows = await conn.fetch("SELECT id, url, source, events FROM subscriptions WHERE disabled_at IS NULL")
    return [recipient_from_row(row) for row in rows]


def recipient_from_row(row: Sequence[Any]) -> Recipient:
    """A recipient from a subscription's `id, url, source, events`."""
    return recipient(row[0], row[1], row[2], _event_types(row[3]))


async def create_subscription(
    conn: Connection, url: str, source: str | None, events: Sequence[str] | None, secret: str, now: float
) -> Subscription:
    """Store a new subscription; it receives events from now on (older jobs are not replayed to it)."""
    row = await conn.fetchrow(
        "INSERT INTO subscriptions (id, url, source, events, secret, created_at)"
        f" VALUES ($1, $2, $3, $4, $5, $6) RETURNING {SUBSCRIPTION_COLUMNS}",
        f"sub_{uuid.uuid4().hex}",
        url,
        source,
        None if events is None else orjson.dumps(list(events)),
        secret,
        now,
    )
    return subscription_from_row(row)


async def delete_subscription(conn: Connection, sub_id: str, now: float) -> bool:
    """Remove a subscription; its deliveries not yet sent are given up (they stay listed, as dead)."""
    if await conn.fetchval("DELETE FROM subscriptions WHERE id = $1 RETURNING id", sub_id) is None:
        return False
    await _give_up(conn, sub_id, "subscription deleted", now)
    return True


async def rotate_secret(
    conn: Connection, sub_id: str, secret: str, now: float, overlap_s: float
) -> Subscription | None:
    """Give the subscription a new secret; the current one keeps signing too for `overlap_s`."""
    row = await conn.fetchrow(
        "UPDATE subscriptions SET previous_secret = secret, previous_secret_until = $1, secret = $2"
        f" WHERE id = $3 RETURNING {SUBSCRIPTION_COLUMNS}",
        now + overlap_s,
        secret,
        sub_id,
    )
    return None if row is None else subscription_from_row(row)


async def update_subscription(
    conn: Connection, sub_id: str, change: SubscriptionChange, now: float
) -> Subscription | None:
    """Apply `change` (relay/outbox_models.py); a new URL moves the deliveries not yet delivered too. None
    when there is no such subscription. The row is locked first: two changes at once apply one after the
    other."""
    if await conn.fetchval("SELECT 1 FROM subscriptions WHERE id = $1 FOR UPDATE", sub_id) is None:
        return None
    update = subscription_change_sql(change)
    if update is not None:
        sql, values = update
        await conn.execute(numbered(sql), *values, sub_id)
    if isinstance(change.url, str):
        await conn.execute(_MOVE_DELIVERIES_SQL, change.url, endpoint_of(change.url), sub_id)
    if change.enabled is False:
        await disable(conn, sub_id, DISABLED_THROUGH_API, now)
    return subscription_from_row(await conn.fetchrow(_GET_SUBSCRIPTION_SQL, sub_id))


async def disable(conn: Connection, sub_id: str, reason: str, now: float) -> None:
    """Stop sending to a subscription (its endpoint keeps refusing); its unsent deliveries are given up."""
    await conn.execute(
        "UPDATE subscriptions SET disabled_at = $1, disabled_reason = $2"
        " WHERE id = $3 AND disabled_at IS NULL",
        now,
        reason,
        sub_id,
    )
    await _give_up(conn, sub_id, f"subscription disabled: {reason}", now)


async def _give_up(conn: Connection, sub_id: str, reason: str, now: float) -> None:
    """Deliveries of a subscription that will never go out; the one in flight settles when it answers."""
    await conn.execute(
        "UPDATE deliveries SET status = 'dead', next_attempt_at = NULL, last_error = $1, updated_at = $2"
        " WHERE subscription_id = $3 AND status IN ('pending', 'retrying')",
        reason,
        now,
        sub_id,
    )
