"""PostgreSQL only: claims by several relays at once (SKIP LOCKED) and leases that run out."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import orjson
import pytest

from relay.models import Event, Job
from relay.outbox_models import AttemptResult, Claim, DeliveryStatus
from relay.store.postgres import deliveries, subscriptions
from relay.store.postgres.outbox import OutboxMethods, queue_deliveries
from relay.store.rows import JOB_COLUMNS, job_from_row
from tests.store.test_deliveries_store import CLAIM_OPTIONS, OK, SECRET, T0
from tests.store.test_deliveries_store import URL_A as URL

pytestmark = pytest.mark.postgres

# Room enough at the one endpoint for every claim here.
OPTIONS: dict[str, Any] = {**CLAIM_OPTIONS, "per_endpoint": 1000}


class Outbox(OutboxMethods):
    """The outbox half alone, on a pool of its own."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool


@pytest.fixture
async def outbox(postgres_database: str) -> AsyncIterator[Outbox]:
    """The outbox of a fresh, migrated database."""
    pool = await asyncpg.create_pool(postgres_database, min_size=2)
    try:
        yield Outbox(pool)
    finally:
        await pool.close()


async def final_event(conn: asyncpg.Connection, i: int) -> tuple[Job, Event]:
    """A succeeded job `j{i}` with its final event, written on `conn`."""
    job = job_from_row(
        await conn.fetchrow(
            "INSERT INTO jobs (source, job_id, status, created_at, updated_at, finished_at)"
            f" VALUES ('demo', $1, 'succeeded', $2, $2, $2) RETURNING {JOB_COLUMNS}",
            f"j{i}",
            T0,
        )
    )
    event_row = await conn.fetchval(
        "INSERT INTO callbacks (job_row, delivery_id, received_at, status, via, body, event_id, type, data)"
        " VALUES ($1, $2, $3, 'succeeded', 'callback', '\\x7b7d', $2, 'job.succeeded', $4) RETURNING id",
        job.row_id,
        f"evt_{i}",
        T0,
        orjson.dumps(job.to_public()),
    )
    return job, Event(event_row, f"evt_{i}", "demo", f"j{i}", "job.succeeded", T0, job.to_public())


async def queue(outbox: Outbox, jobs: int) -> None:
    """One subscription, and one final event queued for it for each of `jobs` jobs."""
    await outbox.create_subscription(URL, None, None, SECRET, T0)
    async with outbox._pool.acquire() as conn, conn.transaction():
        for i in range(jobs):
            job, event = await final_event(conn, i)
            assert await queue_deliveries(conn, event, job, T0) == 1


def ids(claims: list[Claim]) -> set[int]:
    """The claimed deliveries' ids."""
    return {c.delivery.id for c in claims}


async def test_two_open_claims_never_take_the_same_delivery(outbox: Outbox) -> None:
    """While one claim's transaction holds its rows, another claims the rest at once, without waiting."""
    await queue(outbox, 20)
    async with outbox._pool.acquire() as first, outbox._pool.acquire() as second:
        async with first.transaction():
            held = await deliveries.claim(first, T0, limit=5, **OPTIONS)
            async with second.transaction():
                rest = await asyncio.wait_for(deliveries.claim(second, T0, limit=100, **OPTIONS), 5)
    assert len(held) == 5 and len(rest) == 15 and not ids(held) & ids(rest)
    assert await outbox.claim_deliveries(T0, limit=100, **OPTIONS) == []


async def test_concurrent_claimers_share_the_queue_without_overlap(outbox: Outbox) -> None:
    """Many claims racing on several connections take every delivery exactly once."""
    await queue(outbox, 60)
    rounds = await asyncio.gather(*(outbox.claim_deliveries(T0, limit=7, **OPTIONS) for _ in range(12)))
    taken = [c.delivery.id for claims in rounds for c in claims]
    assert len(taken) == len(set(taken)) == 60


async def test_a_lapsed_lease_is_taken_again_and_the_old_token_refused(outbox: Outbox) -> None:
    """After the lease, another claimer takes the delivery with a new token; the old claim's answer is kept
    in the history but does not settle the delivery, the new one's does."""
    await queue(outbox, 1)
    (first,) = await outbox.claim_deliveries(T0, limit=10, **OPTIONS)
    assert await outbox.claim_deliveries(T0 + 44, limit=10, **OPTIONS) == []
    (second,) = await outbox.claim_deliveries(T0 + 45, limit=10, **OPTIONS)
    assert second.delivery.attempts == first.delivery.attempts + 1
    stale = AttemptResult(first.delivery.id, first.delivery.attempts, OK, DeliveryStatus.DELIVERED)
    fresh = AttemptResult(second.delivery.id, second.delivery.attempts, OK, DeliveryStatus.DELIVERED)
    assert await outbox.finish_deliveries([stale]) == [False]
    delivery = await outbox.get_delivery(first.delivery.id)
    assert delivery is not None and delivery.status == DeliveryStatus.DELIVERING
    assert await outbox.finish_deliveries([fresh]) == [True]
    delivery = await outbox.get_delivery(first.delivery.id)
    assert delivery is not None and delivery.status == DeliveryStatus.DELIVERED
    assert len(delivery.history) == 2


async def test_fan_out_sees_subscription_changes_earlier_in_its_transaction(outbox: Outbox) -> None:
    """A subscription created, then disabled, in the caller's transaction applies to the events after it."""
    async with outbox._pool.acquire() as conn, conn.transaction():
        job, event = await final_event(conn, 0)
        assert await queue_deliveries(conn, event, job, T0) == 0
        sub = await subscriptions.create_subscription(conn, URL, None, None, SECRET, T0)
        job, event = await final_event(conn, 1)
        assert await queue_deliveries(conn, event, job, T0) == 1
        assert await queue_deliveries(conn, event, job, T0) == 0  # queued once per event and target
        await subscriptions.disable(conn, sub.id, "410 Gone", T0)
        job, event = await final_event(conn, 2)
        assert await queue_deliveries(conn, event, job, T0) == 0
    (dead,) = await outbox.list_deliveries()
    assert (dead.job_id, dead.status, dead.last_error) == (
        "j1",
        DeliveryStatus.DEAD,
        "subscription disabled: 410 Gone",
    )


async def test_a_claim_reads_on_past_full_endpoints_and_takes_nothing_for_no_room(outbox: Outbox) -> None:
    """Candidates of an endpoint with no room left are passed over without ending the claim; a limit of 0
    takes nothing."""
    await queue(outbox, 12)
    assert await outbox.claim_deliveries(T0, limit=0, **OPTIONS) == []
    options = {**OPTIONS, "per_endpoint": 2}
    assert len(await outbox.claim_deliveries(T0, limit=5, **options)) == 2
