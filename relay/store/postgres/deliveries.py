"""The delivery outbox's SQL for PostgreSQL, each function inside its caller's transaction, but for `claim`
and `record`, whose statements are each atomic and may run outside one.

Several relay processes may claim at once: a claim reads the due rows, chooses within room, and takes the
chosen ones it can lock (`FOR UPDATE SKIP LOCKED`), so two claimers never take the same delivery and neither
waits for the other; the lease is `next_attempt_at`.
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
from relay.store.postgres.notify import OUTBOX_CHANNEL, notify_outbox
from relay.store.postgres.subscriptions import disable

if TYPE_CHECKING:
    from asyncpg import Connection

__all__ = ["claim", "finish", "insert", "record", "retry"]

# Due rows in time order, skipping blocked endpoints, the rows this claim already tried, and any delivery with
# an earlier one of the same job to the same target still unsettled (that keeps events in order). Ordered as
# `deliveries_due` is (equal times in the index's own order), so it reads the index and stops: ordering by id
# too made PostgreSQL read and sort every due row. Nothing is locked: only the chosen rows are, by the take.
_CANDIDATES_SQL = f"""
SELECT d.id, d.endpoint FROM deliveries AS d
WHERE d.status IN {UNSETTLED} AND d.next_attempt_at <= $1
  AND d.endpoint <> ALL($2::text[]) AND d.id <> ALL($4::bigint[])
  AND NOT EXISTS (
      SELECT 1 FROM deliveries AS e
      WHERE e.source = d.source AND e.job_id = d.job_id AND e.target = d.target
        AND e.event_row < d.event_row AND e.status IN {UNSETTLED})
ORDER BY d.next_attempt_at
LIMIT $3
"""
_N_DELIVERY = DELIVERY_COLUMNS.count(",") + 1
_S_COLUMNS = ", ".join(f"s.{column.strip()}" for column in SUBSCRIPTION_COLUMNS.split(","))
# The chosen rows still due that no other claimer holds, taken, each with its event's body parts and its
# subscription, in one statement.
_TAKE_SQL = f"""
WITH locked AS (
    SELECT id FROM deliveries WHERE id = ANY($3::bigint[]) AND status IN {UNSETTLED} AND next_attempt_at <= $4
    FOR UPDATE SKIP LOCKED),
t AS (
    UPDATE deliveries SET status = 'delivering', attempts = attempts + 1, next_attempt_at = $1,
        updated_at = $2
    WHERE id IN (SELECT id FROM locked) RETURNING {DELIVERY_COLUMNS})
SELECT t.*, c.event_id, c.type, c.received_at, c.data, {_S_COLUMNS}
FROM t LEFT JOIN callbacks AS c ON c.id = t.event_row AND c.event_id IS NOT NULL
LEFT JOIN subscriptions AS s ON s.id = t.subscription_id
"""
# An attempt's record and its delivery's new state, in one statement.
_SETTLE_SQL = f"""
WITH recorded AS (INSERT INTO delivery_attempts ({ATTEMPT_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6))
UPDATE deliveries SET status = $7, next_attempt_at = $8, updated_at = $9, last_status_code = $10,
    last_error = $11, delivered_at = COALESCE($12, delivered_at), failures = failures + $13,
    quick_retried = quick_retried OR $14
WHERE id = $15 AND status = 'delivering' AND attempts = $16
RETURNING true
"""
# One statement for every row of a fan-out; a row already queued (same event, same target) is left alone.
_INSERT_SQL = f"""
WITH added AS (
    INSERT INTO deliveries (event_row, event_id, event_type, source, job_id, subscription_id, url, target,
        endpoint, status, next_attempt_at, created_at, updated_at)
    SELECT r.*, 'pending', $10::double precision, $10, $10 FROM unnest($1::bigint[], $2::text[], $3::text[],
        $4::text[], $5::text[], $6::text[], $7::text[], $8::text[], $9::text[]) AS r
    ON CONFLICT (event_row, target) DO NOTHING
    RETURNING 1)
SELECT count(*), (SELECT pg_notify('{OUTBOX_CHANNEL}', '') WHERE EXISTS (SELECT 1 FROM added)) FROM added
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
    # The NOTIFY (sent at COMMIT) rides on the insert when it added rows: no round trip of its own.
    return int(await conn.fetchval(_INSERT_SQL, *columns, now))


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
    # Past the rows of endpoints this claim fills it reads on for one endpoint's worth at most: each row read
    # costs about as much as one taken.
    window = min(candidate_window(limit), limit + per_endpoint)
    left = {**room}
    excluded, tried = list(blocked), list[int]()
    taken: dict[int, tuple[Any, ...]] = {}
    ids: list[int] = []
    while len(ids) < limit:
        candidates = await conn.fetch(_CANDIDATES_SQL, now, excluded, window, tried)
        chosen = claimable(
            ((row[0], row[1]) for row in candidates),
            limit=limit - len(ids),
            per_endpoint=per_endpoint,
            room=left,
        )
        if not chosen:
            break
        for row in await conn.fetch(_TAKE_SQL, now + lease_s, now, chosen, now):
            taken[row[0]] = tuple(row)
        kept = [row_id for row_id in chosen if row_id in taken]
        ids += kept
        if len(kept) == len(chosen):
            break
        # Another claimer holds some of them: read on past those, with the room this claim has used.
        tried += [row_id for row_id in chosen if row_id not in taken]
        for row_id in kept:
            endpoint = delivery_from_row(taken[row_id]).endpoint
            left[endpoint] = left.get(endpoint, per_endpoint) - 1
        excluded = [*blocked, *(endpoint for endpoint, n in left.items() if n <= 0)]
    bodies: dict[int, bytes | None] = {}
    subscriptions: dict[str, Subscription] = {}
    claims: list[Claim] = []
    for row_id in ids:  # in the candidates' order
        row = taken[row_id]
        delivery = delivery_from_row(row)
        event_id, event_type, received_at, data = row[_N_DELIVERY : _N_DELIVERY + 4]
        if delivery.event_row not in bodies:
            bodies[delivery.event_row] = (
                None
                if event_id is None
                else delivery_body(delivery.event_row, event_id, event_type, received_at, _raw(data))
            )
        subscription_row = row[_N_DELIVERY + 4 :]
        if subscription_row[0] is not None and subscription_row[0] not in subscriptions:
            subscriptions[subscription_row[0]] = subscription_from_row(subscription_row)
        subscription = subscriptions.get(delivery.subscription_id or "")
        outcome = dispatch(delivery, subscription, bodies[delivery.event_row], now)
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


def _raw(data: Any) -> bytes:
    """Stored JSON as bytes, whether the column hands back bytes or text."""
    return data if isinstance(data, bytes) else str(data).encode()


async def finish(conn: Connection, results: Sequence[AttemptResult]) -> list[bool]:
    """Record attempts and their deliveries' new states; False for each whose claim `token` was lost."""
    kept = {}
    for i in _in_delivery_order(results):
        kept[i] = await conn.fetchval(
            _SETTLE_SQL, *attempt_values(results[i]), *settlement_values(results[i])
        )
    await _disable_refused(conn, results)
    return [kept[i] is not None for i in range(len(results))]


async def record(conn: Connection, results: Sequence[AttemptResult]) -> None:
    """`finish` without telling which claims were lost: the statements go out together, in one round trip.

    Outside a transaction the batch is still one: its statements share the implicit transaction of one sync.
    """
    if not results:
        return
    order = _in_delivery_order(results)
    values = [(*attempt_values(results[i]), *settlement_values(results[i])) for i in order]
    if not any(result.disable_subscription for result in results):
        await conn.executemany(_SETTLE_SQL, values)
        return
    async with conn.transaction():  # a 410: its subscription is disabled with its record, or neither
        await conn.executemany(_SETTLE_SQL, values)
        await _disable_refused(conn, results)


def _in_delivery_order(results: Sequence[AttemptResult]) -> list[int]:
    # So two transactions settling the same deliveries lock them alike, never crosswise.
    return sorted(range(len(results)), key=lambda i: results[i].delivery_id)


async def _disable_refused(conn: Connection, results: Sequence[AttemptResult]) -> None:
    """Disable the subscriptions an answer refused (410), as on SQLite even when it answers a lost claim."""
    for result in results:
        if result.disable_subscription is not None and result.subscription_id is not None:
            await disable(conn, result.subscription_id, result.disable_subscription, ended_at(result.attempt))


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
