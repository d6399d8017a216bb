"""The delivery outbox's SQL for PostgreSQL, each function inside its caller's transaction.

Several relay processes may claim at once: a claim locks its due rows with `FOR UPDATE SKIP LOCKED`, so two
claimers never take the same delivery and neither waits for the other; the lease is `next_attempt_at`.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from relay.domain.outbox import (
    Target,
    candidate_window,
    claimable,
    delivery_body,
    dispatch,
    ended_at,
)
from relay.models import Event
from relay.outbox_models import AttemptResult, Claim, Delivery, Subscription, endpoint_of
from relay.store.outbox_rows import (
    ATTEMPT_COLUMNS,
    DELIVERY_COLUMNS,
    SUBSCRIPTION_COLUMNS,
    UNSETTLED,
    attempt_values,
    delivery_from_row,
    settlement_values,
    subscription_from_row,
)
from relay.store.postgres.notify import notify_outbox
from relay.store.postgres.subscriptions import disable

if TYPE_CHECKING:
    from asyncpg import Connection

__all__ = ["claim", "finish", "insert", "retry"]

# Due rows in time order, skipping blocked endpoints and any delivery with an earlier one of the same job to
# the same target still unsettled (that keeps events in order); rows another claimer holds are passed over.
_CANDIDATES_SQL = f"""
SELECT d.id, d.endpoint FROM deliveries AS d
WHERE d.status IN {UNSETTLED} AND d.next_attempt_at <= $1
  AND d.endpoint <> ALL($2::text[])
  AND NOT EXISTS (
      SELECT 1 FROM deliveries AS e
      WHERE e.source = d.source AND e.job_id = d.job_id AND e.target = d.target
        AND e.event_row < d.event_row AND e.status IN {UNSETTLED})
ORDER BY d.next_attempt_at, d.id
LIMIT $3
FOR UPDATE OF d SKIP LOCKED
"""
_TAKE_SQL = (
    "UPDATE deliveries SET status = 'delivering', attempts = attempts + 1, next_attempt_at = $1,"
    f" updated_at = $2 WHERE id = ANY($3::bigint[]) RETURNING {DELIVERY_COLUMNS}"
)
# One statement for every row of a fan-out; a row already queued (same event, same target) is left alone.
_INSERT_SQL = """
WITH added AS (
    INSERT INTO deliveries (event_row, event_id, event_type, source, job_id, subscription_id, url, target,
        endpoint, status, next_attempt_at, created_at, updated_at)
    SELECT r.*, 'pending', $10::double precision, $10, $10 FROM unnest($1::bigint[], $2::text[], $3::text[],
        $4::text[], $5::text[], $6::text[], $7::text[], $8::text[], $9::text[]) AS r
    ON CONFLICT (event_row, target) DO NOTHING
    RETURNING 1)
SELECT count(*) FROM added
"""


async def insert(conn: Connection, events: Sequence[Event], targets: Sequence[Target], now: float) -> int:
    """Queue each event for each target, due now; answer how many deliveries were made."""
    if not events or not targets:  # most events have no subscriber: no statement at all
        return 0
    rows = [(e, sub_id, url, target) for e in events for sub_id, url, target in targets]
    columns: list[list[Any]] = [
        [e.id for e, *_ in rows],
        [e.event_id for e, *_ in rows],
        [e.type for e, *_ in rows],
        [e.source for e, *_ in rows],
        [e.job_id for e, *_ in rows],
        [sub_id for _, sub_id, _, _ in rows],
        [url for _, _, url, _ in rows],
        [target for *_, target in rows],
        [endpoint_of(url) for _, _, url, _ in rows],
    ]
    added = int(await conn.fetchval(_INSERT_SQL, *columns, now))
    if added:
        await notify_outbox(conn)
    return added


async def claim(
    conn: Connection,
    now: float,
    *,
    limit: int,
    lease_s: float,
    per_endpoint: int,
    room: Mapping[str, int],
    blocked: Collection[str],
) -> list[Claim]:
    """Take up to `limit` due deliveries for one attempt each under a lease of `lease_s`, within room.

    A delivery whose subscription or event is gone is given up here instead of being taken.
    """
    if limit <= 0:
        return []
    # Rows are locked as the cursor reaches them: a claim holds what it looked at, not the whole window.
    cursor = await conn.cursor(_CANDIDATES_SQL, now, list(blocked), candidate_window(limit))
    seen: list[tuple[int, str]] = []
    while True:
        batch = await cursor.fetch(limit)
        seen.extend((row[0], row[1]) for row in batch)
        ids = claimable(seen, limit=limit, per_endpoint=per_endpoint, room=room)
        if len(ids) >= limit or len(batch) < limit:
            break
    if not ids:
        return []
    taken = {row[0]: delivery_from_row(row) for row in await conn.fetch(_TAKE_SQL, now + lease_s, now, ids)}
    deliveries = [taken[row_id] for row_id in ids]  # in the candidates' order
    subscriptions = await _subscriptions(conn, {d.subscription_id for d in deliveries} - {None})
    bodies = await _bodies(conn, {d.event_row for d in deliveries})
    claims: list[Claim] = []
    for delivery in deliveries:
        subscription = subscriptions.get(delivery.subscription_id or "")
        outcome = dispatch(delivery, subscription, bodies.get(delivery.event_row), now)
        if isinstance(outcome, str):
            await conn.execute(
                "UPDATE deliveries SET status = 'dead', next_attempt_at = NULL, last_error = $1,"
                " updated_at = $2 WHERE id = $3",
                outcome,
                now,
                delivery.id,
            )
        else:
            claims.append(outcome)
    return claims


async def _subscriptions(conn: Connection, ids: Collection[str | None]) -> dict[str, Subscription]:
    """The subscriptions still there among `ids`, by id."""
    if not ids:
        return {}
    rows = await conn.fetch(f"SELECT {SUBSCRIPTION_COLUMNS} FROM subscriptions WHERE id = ANY($1)", list(ids))
    return {row[0]: subscription_from_row(row) for row in rows}


async def _bodies(conn: Connection, event_rows: Collection[int]) -> dict[int, bytes]:
    """The delivery bodies of the events still there among `event_rows`, by row."""
    rows = await conn.fetch(
        "SELECT id, event_id, type, received_at, data FROM callbacks"
        " WHERE id = ANY($1::bigint[]) AND event_id IS NOT NULL",
        list(event_rows),
    )
    return {row[0]: delivery_body(row[0], row[1], row[2], row[3], _raw(row[4])) for row in rows}


def _raw(data: Any) -> bytes:
    """Stored JSON as bytes, whether the column hands back bytes or text."""
    return data if isinstance(data, bytes) else str(data).encode()


async def finish(conn: Connection, results: Sequence[AttemptResult]) -> list[bool]:
    """Record attempts and their deliveries' new states; False for each whose claim `token` was lost."""
    # In delivery order, so two transactions settling the same deliveries lock them alike, never crosswise.
    order = sorted(range(len(results)), key=lambda i: results[i].delivery_id)
    kept = {i: await _finish(conn, results[i]) for i in order}
    return [kept[i] for i in range(len(results))]


async def _finish(conn: Connection, result: AttemptResult) -> bool:
    await conn.execute(
        f"INSERT INTO delivery_attempts ({ATTEMPT_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6)",
        *attempt_values(result),
    )
    # The token guard: a claim whose lease ran out and was taken again has a smaller `attempts`.
    kept = await conn.fetchval(
        "UPDATE deliveries SET status = $1, next_attempt_at = $2, updated_at = $3, last_status_code = $4,"
        " last_error = $5, delivered_at = COALESCE($6, delivered_at), failures = failures + $7,"
        " quick_retried = quick_retried OR $8 WHERE id = $9 AND status = 'delivering' AND attempts = $10"
        " RETURNING true",
        *settlement_values(result),
    )
    if result.disable_subscription is not None and result.subscription_id is not None:
        # As on SQLite, a 410 disables the subscription even when it answers a lost claim.
        await disable(conn, result.subscription_id, result.disable_subscription, ended_at(result.attempt))
    return kept is not None


async def retry(conn: Connection, delivery_id: int, now: float) -> Delivery | None:
    """Queue a delivery again, due now, with a fresh retry schedule (not one in flight: None)."""
    row = await conn.fetchrow(
        "UPDATE deliveries SET status = 'pending', next_attempt_at = $1, failures = 0, quick_retried = false,"
        f" updated_at = $1 WHERE id = $2 AND status <> 'delivering' RETURNING {DELIVERY_COLUMNS}",
        now,
        delivery_id,
    )
    if row is None:
        return None
    await notify_outbox(conn)
    return delivery_from_row(row)
