"""SQLite only: the outbox inside the group-commit writer's shared transactions."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import Any

from relay.models import Status
from relay.outbox_models import DeliveryStatus
from relay.store import Store
from relay.store.sqlite import SQLiteStore
from tests.store.test_deliveries_store import SECRET, T0, TIMEOUT, URL_A, URL_B, callback, claim, finish


async def test_events_see_subscription_changes_made_earlier_in_their_transaction(sqlite_store: Store) -> None:
    """Subscriptions are read once per transaction, yet a creation, a disabling or a deletion earlier in
    the same shared transaction applies to the events after it."""
    assert isinstance(sqlite_store, SQLiteStore)

    async def together(*steps: Awaitable[Any]) -> list[Any]:
        before = sqlite_store.writer.batches
        results = await asyncio.gather(*steps)
        assert sqlite_store.writer.batches - before == 1  # one transaction
        return results

    _, sub, _ = await together(
        sqlite_store.ingest("demo", callback("j1", Status.SUCCEEDED), T0, TIMEOUT),
        sqlite_store.create_subscription(URL_A, None, None, SECRET, T0),
        sqlite_store.ingest("demo", callback("j2", Status.SUCCEEDED), T0, TIMEOUT),
    )
    assert [d.job_id for d in await sqlite_store.list_deliveries()] == ["j2"]
    (taken,) = await claim(sqlite_store)
    await together(
        finish(sqlite_store, taken, DeliveryStatus.DEAD, disable_subscription="410 Gone"),
        sqlite_store.ingest("demo", callback("j3", Status.SUCCEEDED), T0, TIMEOUT),
    )
    other = await sqlite_store.create_subscription(URL_B, None, None, SECRET, T0)
    await together(
        sqlite_store.delete_subscription(other.id, T0),
        sqlite_store.ingest("demo", callback("j4", Status.SUCCEEDED), T0, TIMEOUT),
    )
    assert [d.job_id for d in await sqlite_store.list_deliveries()] == ["j2"]
    assert sub.id != other.id


async def test_recover_makes_work_in_flight_due_now(sqlite_store: Store) -> None:
    """After a crash of the one process that owns the file, its deliveries in flight are due at once, not
    at their lease's end (on PostgreSQL, shared by several relays, only a lapsed lease frees a claim)."""
    await sqlite_store.create_subscription(URL_A, None, None, SECRET, T0)
    await sqlite_store.ingest("demo", callback("j", Status.SUCCEEDED), T0, TIMEOUT)
    await claim(sqlite_store, lease_s=3600)
    assert await sqlite_store.recover_deliveries(T0 + 1) == 1
    (c,) = await claim(sqlite_store, T0 + 1)
    assert c.delivery.attempts == 2
