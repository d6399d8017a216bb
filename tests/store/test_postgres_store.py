"""PostgreSQL only: several relays (pools) on one database agree, and the store answers its health check."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from relay.errors import ServiceUnavailable
from relay.models import Registration, Status
from relay.store import Store, open_store
from tests.store.test_deliveries_store import SECRET, URL_A, claim
from tests.store.test_store_contract import T0, TIMEOUT, callback

pytestmark = pytest.mark.postgres


@pytest.fixture
async def two_stores(postgres_database: str) -> AsyncIterator[tuple[Store, Store]]:
    """Two stores, each with its own pool, on one database: two relay processes."""
    first = await open_store(f"{postgres_database}?pool_max=4")
    second = await open_store(f"{postgres_database}?pool_min=2&pool_max=4")
    try:
        yield first, second
    finally:
        await first.close()
        await second.close()


async def test_two_relays_make_one_final_transition(two_stores: tuple[Store, Store]) -> None:
    """Distinct final callbacks for one job through two relays at once: one sets it, the others are kept."""
    outcomes = await asyncio.gather(
        *(
            two_stores[i % 2].ingest("demo", callback("j", Status.SUCCEEDED, f"d{i}", {"i": i}), T0, TIMEOUT)
            for i in range(32)
        )
    )
    assert sum(o.changed for o in outcomes) == 1 and sum(o.duplicate for o in outcomes) == 31
    job = await two_stores[1].get_job("demo", "j")
    assert job is not None and job.callbacks == 32
    assert len(await two_stores[0].list_events("demo", "j")) == 1


async def test_registration_racing_the_first_callback_makes_one_job(two_stores: tuple[Store, Store]) -> None:
    """A registration and the job's first callback through two relays at once: one job with both."""
    first, second = two_stores
    for n in range(8):
        await asyncio.gather(
            first.ingest("demo", callback(f"j{n}", Status.SUCCEEDED, "d1", {"v": n}), T0, TIMEOUT),
            second.register(Registration("demo", f"j{n}", None, (), {"user": n}), T0, TIMEOUT),
        )
        stored = await first.get_job("demo", f"j{n}")
        assert stored is not None and (stored.status, stored.result, stored.metadata) == (
            Status.SUCCEEDED,
            {"v": n},
            {"user": n},
        )
    assert await first.count_jobs_by_status() == {"succeeded": 8}


async def test_time_out_and_a_callback_race_to_one_final_state(two_stores: tuple[Store, Store]) -> None:
    """The sweeper's time-out and a result at once: the job ends once; a result after the time-out is late."""
    first, second = two_stores
    await first.register(Registration("demo", "j", 10.0), T0, TIMEOUT)
    timed_out, result = await asyncio.gather(
        first.time_out("demo", "j", T0 + 11),
        second.ingest("demo", callback("j", Status.SUCCEEDED, "d1", {"v": 1}), T0 + 11, TIMEOUT),
    )
    job = await first.get_job("demo", "j")
    assert job is not None and job.status == Status.SUCCEEDED and result.changed
    assert job.late == (timed_out is not None)
    assert [e.type for e in await first.list_events("demo", "j")][-1] == "job.succeeded"


async def test_ping_tells_a_closed_pool_from_a_live_one(postgres_database: str) -> None:
    """A live database passes the health check; once the pool is gone the check says the database is down."""
    store = await open_store(postgres_database)
    await store.ping()
    await store.close()
    with pytest.raises(ServiceUnavailable) as info:
        await store.ping()
    assert info.value.code == "database_down"


async def test_a_starting_relay_leaves_other_relays_claims_alone(two_stores: tuple[Store, Store]) -> None:
    """Recovery at start takes nothing from a relay still sending: its claim stands until its lease ends."""
    first, second = two_stores
    await first.create_subscription(URL_A, None, None, SECRET, T0)
    await first.ingest("demo", callback("j", Status.SUCCEEDED, "d1"), T0, TIMEOUT)
    (held,) = await claim(first, T0, limit=10, lease_s=60)
    assert await second.recover_deliveries(T0 + 1) == 0
    assert await claim(second, T0 + 1, limit=10, lease_s=60) == []
    (delivery,) = await second.list_deliveries()
    assert (delivery.id, delivery.status.value) == (held.delivery.id, "delivering")
