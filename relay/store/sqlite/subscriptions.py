"""Subscriptions for SQLite: their writes, and the enabled ones as fan-out matches them (read once per
transaction, in the writer's memo)."""

from __future__ import annotations

import sqlite3
import uuid
from collections.abc import Sequence

import orjson

from relay.domain.outbox import Recipient, recipient
from relay.outbox_models import Subscription, SubscriptionChange, endpoint_of
from relay.store.outbox_rows import (
    DISABLED_THROUGH_API,
    GET_SUBSCRIPTION_SQL,
    MOVE_DELIVERIES_SQL,
    subscription_change_sql,
    subscription_from_row,
)
from relay.store.sqlite.writer import memo_of

__all__ = [
    "create_subscription",
    "delete_subscription",
    "disable",
    "recipients",
    "rotate_secret",
    "update_subscription",
]

_RECIPIENTS = "recipients"  # the memo's entry: every enabled subscription, as fan-out matches it


def recipients(conn: sqlite3.Connection) -> list[Recipient]:
    """Every enabled subscription, read once per transaction (the writer's memo)."""
    memo = memo_of(conn)
    held: list[Recipient] | None = memo.get(_RECIPIENTS)
    if held is None:
        held = memo[_RECIPIENTS] = [
            recipient(sub_id, url, source, None if events is None else orjson.loads(events))
            for sub_id, url, source, events in conn.execute(
                "SELECT id, url, source, events FROM subscriptions WHERE disabled_at IS NULL"
            )
        ]
    return held


def create_subscription(
    conn: sqlite3.Connection,
    url: str,
    source: str | None,
    events: Sequence[str] | None,
    secret: str,
    now: float,
) -> Subscription:
    """Store a new subscription; it receives events from now on (older jobs are not replayed to it)."""
    sub_id = f"sub_{uuid.uuid4().hex}"
    conn.execute(
        "INSERT INTO subscriptions (id, url, source, events, secret, created_at) VALUES (?, ?, ?, ?, ?, ?)",
        (sub_id, url, source, None if events is None else orjson.dumps(list(events)), secret, now),
    )
    memo_of(conn).pop(_RECIPIENTS, None)
    return subscription_from_row(conn.execute(GET_SUBSCRIPTION_SQL, (sub_id,)).fetchone())


def delete_subscription(conn: sqlite3.Connection, sub_id: str, now: float) -> bool:
    """Remove a subscription; its deliveries not yet sent are given up (they stay listed, as dead)."""
    if not conn.execute("DELETE FROM subscriptions WHERE id = ?", (sub_id,)).rowcount:
        return False
    memo_of(conn).pop(_RECIPIENTS, None)
    _give_up(conn, sub_id, "subscription deleted", now)
    return True


def rotate_secret(
    conn: sqlite3.Connection, sub_id: str, secret: str, now: float, overlap_s: float
) -> Subscription | None:
    """Give the subscription a new secret; the current one keeps signing too for `overlap_s`."""
    changed = conn.execute(
        "UPDATE subscriptions SET previous_secret = secret, previous_secret_until = ?, secret = ?"
        " WHERE id = ?",
        (now + overlap_s, secret, sub_id),
    ).rowcount
    return (
        subscription_from_row(conn.execute(GET_SUBSCRIPTION_SQL, (sub_id,)).fetchone()) if changed else None
    )


def update_subscription(
    conn: sqlite3.Connection, sub_id: str, change: SubscriptionChange, now: float
) -> Subscription | None:
    """Apply `change` (relay/outbox_models.py); a new URL moves the deliveries not yet delivered too. None
    when there is no such subscription."""
    if conn.execute("SELECT 1 FROM subscriptions WHERE id = ?", (sub_id,)).fetchone() is None:
        return None
    update = subscription_change_sql(change)
    if update is not None:
        sql, values = update
        conn.execute(sql, (*values, sub_id))
        memo_of(conn).pop(_RECIPIENTS, None)
    if isinstance(change.url, str):
        conn.execute(MOVE_DELIVERIES_SQL, (change.url, endpoint_of(change.url), sub_id))
    if change.enabled is False:
        disable(conn, sub_id, DISABLED_THROUGH_API, now)
    return subscription_from_row(conn.execute(GET_SUBSCRIPTION_SQL, (sub_id,)).fetchone())


def disable(conn: sqlite3.Connection, sub_id: str, reason: str, now: float) -> None:
    """Stop sending to a subscription (its endpoint keeps refusing); its unsent deliveries are given up."""
    conn.execute(
        "UPDATE subscriptions SET disabled_at = ?, disabled_reason = ? WHERE id = ? AND disabled_at IS NULL",
        (now, reason, sub_id),
    )
    memo_of(conn).pop(_RECIPIENTS, None)
    _give_up(conn, sub_id, f"subscription disabled: {reason}", now)


def _give_up(conn: sqlite3.Connection, sub_id: str, reason: str, now: float) -> None:
    """Deliveries of a subscription that will never go out; the one in flight settles when it answers."""
    conn.execute(
        "UPDATE deliveries SET status = 'dead', next_attempt_at = NULL, last_error = ?, updated_at = ?"
        " WHERE subscription_id = ? AND status IN ('pending', 'retrying')",
        (reason, now, sub_id),
    )
