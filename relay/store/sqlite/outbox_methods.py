"""The `OutboxStore` half of `SQLiteStore`: subscriptions and deliveries, their SQL in subscriptions.py,
outbox.py, reads.py and ../outbox_rows.py (outbox.py holds the writer's side and is near its size bound)."""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence
from functools import partial
from typing import Any

from relay.outbox_models import (
    AttemptResult,
    Claim,
    Delivery,
    DeliveryStatus,
    Subscription,
    SubscriptionChange,
)
from relay.store.outbox_rows import (
    GET_SUBSCRIPTION_SQL,
    LIST_SUBSCRIPTIONS_SQL,
    list_deliveries_sql,
    subscription_from_row,
    with_attempts,
)
from relay.store.sqlite import outbox, subscriptions
from relay.store.sqlite.handles import Handles
from relay.store.sqlite.reads import GET_DELIVERY_SQL, attempts_sql

__all__ = ["OutboxMethods"]


class OutboxMethods(Handles):
    """Writes through `SQLiteStore`'s writer, reads on its reader."""

    async def create_subscription(
        self, url: str, source: str | None, events: Sequence[str] | None, secret: str, now: float
    ) -> Subscription:
        return await self.writer.run(subscriptions.create_subscription, url, source, events, secret, now)

    async def list_subscriptions(self) -> list[Subscription]:
        rows = await self._db.execute_fetchall(LIST_SUBSCRIPTIONS_SQL)
        return [subscription_from_row(row) for row in rows]

    async def get_subscription(self, sub_id: str) -> Subscription | None:
        rows = list(await self._db.execute_fetchall(GET_SUBSCRIPTION_SQL, (sub_id,)))
        return subscription_from_row(rows[0]) if rows else None

    async def delete_subscription(self, sub_id: str, now: float) -> bool:
        return await self.writer.run_bulk(subscriptions.delete_subscription, sub_id, now)

    async def rotate_subscription_secret(
        self, sub_id: str, secret: str, now: float, overlap_s: float
    ) -> Subscription | None:
        return await self.writer.run(subscriptions.rotate_secret, sub_id, secret, now, overlap_s)

    async def update_subscription(
        self, sub_id: str, change: SubscriptionChange, now: float
    ) -> Subscription | None:
        return await self.writer.run_bulk(subscriptions.update_subscription, sub_id, change, now)

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
        return await self.writer.run(
            partial(
                outbox.claim,
                finished=list(finished),
                limit=limit,
                lease_s=lease_s,
                per_endpoint=per_endpoint,
                room=dict(room),
                blocked=list(blocked),
            ),
            now,
        )

    async def finish_deliveries(self, results: Sequence[AttemptResult]) -> list[bool]:
        return await self.writer.run(outbox.finish, list(results))

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
        return await self._with_attempts(await self._db.execute_fetchall(sql, params))

    async def get_delivery(self, delivery_id: int) -> Delivery | None:
        rows = await self._db.execute_fetchall(GET_DELIVERY_SQL, (delivery_id,))
        found = await self._with_attempts(rows)
        return found[0] if found else None

    async def _with_attempts(self, rows: Iterable[Any]) -> list[Delivery]:
        rows = list(rows)
        ids = [row[0] for row in rows]
        attempts = await self._db.execute_fetchall(attempts_sql(len(ids)), ids) if ids else ()
        return with_attempts(rows, attempts)

    async def retry_delivery(self, delivery_id: int, now: float) -> Delivery | None:
        return await self.writer.run(outbox.retry, delivery_id, now)

    async def recover_deliveries(self, now: float) -> int:
        return await self.writer.run_bulk(outbox.recover, now)
