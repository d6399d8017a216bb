"""The delivery outbox for PostgreSQL: fan-out inside the job's transaction, and the `OutboxStore` half.

`queue_deliveries` and `backfill_deliveries` run on the caller's connection, inside the transaction that
changed the job, so a result is never stored without its deliveries queued. Every `OutboxMethods` method
is one transaction of its own, committed (durable) before it returns. The SQL is in deliveries.py and
subscriptions.py.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING

from relay.domain.outbox import Recipient, backfill_targets, backfilled_events, targets_for
from relay.domain.progress import coalesces
from relay.models import Event, Job
from relay.outbox_models import (
    AttemptResult,
    Claim,
    Delivery,
    DeliveryStatus,
    Subscription,
    SubscriptionChange,
)
from relay.store.numbered import numbered
from relay.store.outbox_rows import (
    ATTEMPT_COLUMNS,
    GET_SUBSCRIPTION_SQL,
    LIST_SUBSCRIPTIONS_SQL,
    list_deliveries_sql,
    subscription_from_row,
    with_attempts,
)
from relay.store.postgres import deliveries, subscriptions
from relay.store.rows import BACKFILL_EVENTS_SQL, events_from_rows

if TYPE_CHECKING:
    import asyncpg

__all__ = ["OutboxMethods", "backfill_deliveries", "queue_deliveries", "queue_deliveries_to"]

_ATTEMPTS_SQL = (
    f"SELECT {ATTEMPT_COLUMNS} FROM delivery_attempts WHERE delivery_id = ANY($1::bigint[]) ORDER BY id"
)
_BACKFILL_EVENTS_SQL = numbered(BACKFILL_EVENTS_SQL)
_GET_SUBSCRIPTION_SQL = numbered(GET_SUBSCRIPTION_SQL)
# A new progress event takes over the last delivery of its job to a target when that is an older progress
# event's, never attempted (relay/domain/progress.py `coalesces`). A claim that locked the row first wins:
# the row, re-read once the claim commits, is no longer pending, and the event gets a row of its own.
_TAKE_OVER_SQL = """
UPDATE deliveries AS d SET event_row = $1, event_id = $2, updated_at = $3
WHERE d.source = $4 AND d.job_id = $5 AND d.target = ANY($6::text[]) AND d.event_type = $7
  AND d.status = 'pending' AND d.attempts = 0
  AND NOT EXISTS (
      SELECT 1 FROM deliveries AS e
      WHERE e.source = d.source AND e.job_id = d.job_id AND e.target = d.target AND e.event_row > d.event_row)
RETURNING d.target
"""


async def queue_deliveries(conn: asyncpg.Connection, event: Event, job: Job, now: float) -> int:
    """Queue `event` for every subscriber that wants it, due now; answer how many deliveries were made."""
    return await queue_deliveries_to(conn, event, job, now, await subscriptions.recipients(conn))


async def queue_deliveries_to(
    conn: asyncpg.Connection, event: Event, job: Job, now: float, everyone: Sequence[Recipient]
) -> int:
    """As `queue_deliveries`, with the enabled subscriptions already read in this transaction (an event
    that coalesces counts the deliveries it took over)."""
    targets = targets_for(event.type, job, everyone)
    if not targets or not coalesces(event.type):
        return await deliveries.insert(conn, [event], targets, now)
    names = [target for _, _, target in targets]
    bound = (event.id, event.event_id, now, event.source, event.job_id, names, event.type)
    taken = {row[0] for row in await conn.fetch(_TAKE_OVER_SQL, *bound)}
    rest = [target for target in targets if target[2] not in taken]
    return len(taken) + await deliveries.insert(conn, [event], rest, now)


async def backfill_deliveries(
    conn: asyncpg.Connection, job: Job, added_urls: Iterable[str], now: float
) -> int:
    """Queue a final job's final event(s) for per-job subscribers added after it finished."""
    targets = backfill_targets(job, added_urls)
    if not targets:
        return 0
    events = events_from_rows(job, await conn.fetch(_BACKFILL_EVENTS_SQL, job.row_id))
    return await deliveries.insert(conn, backfilled_events(events), targets, now)


class OutboxMethods:
    """The `OutboxStore` half of `PostgresStore`, on the pool its class opens."""

    _pool: asyncpg.Pool

    async def create_subscription(
        self, url: str, source: str | None, events: Sequence[str] | None, secret: str, now: float
    ) -> Subscription:
        async with self._pool.acquire() as conn, conn.transaction():
            return await subscriptions.create_subscription(conn, url, source, events, secret, now)

    async def list_subscriptions(self) -> list[Subscription]:
        rows = await self._pool.fetch(LIST_SUBSCRIPTIONS_SQL)
        return [subscription_from_row(row) for row in rows]

    async def get_subscription(self, sub_id: str) -> Subscription | None:
        row = await self._pool.fetchrow(_GET_SUBSCRIPTION_SQL, sub_id)
        return None if row is None else subscription_from_row(row)

    async def delete_subscription(self, sub_id: str, now: float) -> bool:
        async with self._pool.acquire() as conn, conn.transaction():
            return await subscriptions.delete_subscription(conn, sub_id, now)

    async def rotate_subscription_secret(
        self, sub_id: str, secret: str, now: float, overlap_s: float
    ) -> Subscription | None:
        async with self._pool.acquire() as conn, conn.transaction():
            return await subscriptions.rotate_secret(conn, sub_id, secret, now, overlap_s)

    async def update_subscription(
        self, sub_id: str, change: SubscriptionChange, now: float
    ) -> Subscription | None:
        async with self._pool.acquire() as conn, conn.transaction():
            return await subscriptions.update_subscription(conn, sub_id, change, now)

    async def claim_deliveries(
        self,
        now: float,
        *,
        limit: int,
        lease_s: float,
        per_endpoint: int,
        room: Mapping[str, int],
        blocked: Collection[str],
        finished: Sequence[AttemptResult] = (),
    ) -> list[Claim]:
        async with self._pool.acquire() as conn:
            # No transaction around the round: each statement is atomic and its own commit, which saves the
            # round trips of BEGIN and COMMIT on the deliverer's critical path (the records and the take are
            # each one statement). Recorded first: a job's next event, held behind the one just delivered,
            # is taken in this round.
            await deliveries.record(conn, finished)
            return await deliveries.claim(
                conn, now, limit=limit, lease_s=lease_s, per_endpoint=per_endpoint, room=room, blocked=blocked
            )

    async def finish_deliveries(self, results: Sequence[AttemptResult]) -> list[bool]:
        async with self._pool.acquire() as conn, conn.transaction():
            return await deliveries.finish(conn, results)

    async def list_deliveries(
        self,
        *,
        status: DeliveryStatus | None = None,
        source: str | None = None,
        job_id: str | None = None,
        subscription_id: str | None = None,
        limit: int = 50,
        before: int | None = None,
    ) -> list[Delivery]:
        sql, params = list_deliveries_sql(
            status=None if status is None else status.value,
            source=source,
            job_id=job_id,
            subscription_id=subscription_id,
            before=before,
            limit=limit,
        )
        async with self._pool.acquire() as conn, conn.transaction(readonly=True):
            # One snapshot for the page and its attempts.
            return await _with_attempts(conn, await conn.fetch(numbered(sql), *params))

    async def get_delivery(self, delivery_id: int) -> Delivery | None:
        found = await self.list_deliveries(before=delivery_id + 1, limit=1)
        return found[0] if found and found[0].id == delivery_id else None

    async def retry_delivery(self, delivery_id: int, now: float) -> Delivery | None:
        async with self._pool.acquire() as conn, conn.transaction():
            return await deliveries.retry(conn, delivery_id, now)

    async def recover_deliveries(self, now: float) -> int:
        """Nothing: several relays share this table, and a starting one cannot tell a claim whose relay died
        from one still being sent; a claim whose lease lapsed is taken again by the next claim instead."""
        return 0


async def _with_attempts(conn: asyncpg.Connection, rows: Sequence[asyncpg.Record]) -> list[Delivery]:
    """Deliveries of `rows` (selected with `DELIVERY_COLUMNS`), each with its attempts, oldest first."""
    ids = [row[0] for row in rows]
    return with_attempts(rows, await conn.fetch(_ATTEMPTS_SQL, ids) if ids else ())
