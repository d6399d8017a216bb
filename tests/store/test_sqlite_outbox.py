"""SQLite only: the outbox inside the group-commit writer's shared transactions."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable
from pathlib import Path
from typing import Any

import pytest

from relay.models import DeliveryStatus, Status
from relay.store import Store
from relay.store.sqlite import SQLiteStore
from tests.store.test_deliveries_store import SECRET, T0, TIMEOUT, URL_A, URL_B, callback, claim, finish


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SQLiteStore]:
    """An empty SQLite store, whatever backends the shared fixture covers."""
    opened = await SQLiteStore.open(str(tmp_path / "store.db"))
    try:
        yield opened
    finally:
        await opened.close()


async def test_events_see_subscription_changes_made_earlier_in_their_transaction(store: Store) -> None:
    """Subscriptions are read once per transaction, yet a creation, a disabling or a deletion earlier in
    the same shared transaction applies to the events after it."""
    assert isinstance(store, SQLiteStore)

    async def together(*steps: Awaitable[Any]) -> list[Any]:
        before = store.writer.batches
        results = await asyncio.gather(*steps)
        assert store.writer.batches - before == 1  # one transaction
        return results

    _, sub, _ = await together(
        store.ingest("demo", callback("j1", Status.SUCCEEDED), T0, TIMEOUT),
        store.create_subscription(URL_A, None, None, SECRET, T0),
        store.ingest("demo", callback("j2", Status.SUCCEEDED), T0, TIMEOUT),
    )
    assert [d.job_id for d in await store.list_deliveries()] == ["j2"]
    (taken,) = await claim(store)
    await together(
        finish(store, taken, DeliveryStatus.DEAD, disable_subscription="410 Gone"),
        store.ingest("demo", callback("j3", Status.SUCCEEDED), T0, TIMEOUT),
    )
    other = await store.create_subscription(URL_B, None, None, SECRET, T0)
    await together(
        store.delete_subscription(other.id, T0),
        store.ingest("demo", callback("j4", Status.SUCCEEDED), T0, TIMEOUT),
    )
    assert [d.job_id for d in await store.list_deliveries()] == ["j2"]
    assert sub.id != other.id


async def test_recover_makes_work_in_flight_due_now(store: Store) -> None:
    """After a crash of the one process that owns the file, its deliveries in flight are due at once, not
    at their lease's end (on PostgreSQL, shared by several relays, only a lapsed lease frees a claim)."""
    await store.create_subscription(URL_A, None, None, SECRET, T0)
    await store.ingest("demo", callback("j", Status.SUCCEEDED), T0, TIMEOUT)
    await claim(store, lease_s=3600)
    assert await store.recover_deliveries(T0 + 1) == 1
    (c,) = await claim(store, T0 + 1)
    assert c.delivery.attempts == 2
