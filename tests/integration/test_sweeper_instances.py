"""Several relays on one PostgreSQL: one sweeper at a time (the lease), another takes over when the holder
stops or its lease lapses, and two sweepers at once still end each job once. Each relay is its own app
(`create_app(..., background=False)`), its rounds driven by `run_once(now)` on a shared clock."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path

import pytest

from relay.app import create_app
from relay.models import Registration, Status
from relay.services import Services
from relay.settings import Settings
from relay.sweeper import LEASE_ROUNDS, Sweeper
from tests.conftest import Clock, make_settings

pytestmark = pytest.mark.postgres

T0 = 1_900_000_000.0
INTERVAL = 5.0
TTL = LEASE_ROUNDS * INTERVAL


@asynccontextmanager
async def relay(settings: Settings, clock: Clock) -> AsyncIterator[Services]:
    """One relay: its app's lifespan (store open, loops built but not started) until the block ends."""
    app = create_app(settings, clock=clock, background=False)
    async with app.router.lifespan_context(app):
        yield app.state.services


@pytest.fixture
def settings(tmp_path: Path, postgres_database: str) -> Settings:
    return make_settings(tmp_path, database=postgres_database, sweep_interval_s=INTERVAL)


@pytest.fixture
async def pair(settings: Settings) -> AsyncIterator[tuple[Services, Services, AsyncExitStack]]:
    """Two relays on one database, and the stack that stops them (a test may stop the first sooner)."""
    clock = Clock(T0)
    async with AsyncExitStack() as stack:
        first = await stack.enter_async_context(relay(settings, clock))
        async with relay(settings, clock) as second:
            yield first, second, stack


async def register(services: Services, job_id: str, timeout_s: float) -> None:
    await services.store.register(Registration("demo", job_id, timeout_s), T0, 900.0)


async def status(services: Services, job_id: str) -> Status:
    job = await services.store.get_job("demo", job_id)
    assert job is not None
    return job.status


def sweeper(services: Services) -> Sweeper:
    return services.loop(Sweeper)


async def test_one_relay_sweeps_while_it_holds_the_lease(
    pair: tuple[Services, Services, AsyncExitStack],
) -> None:
    """The first relay to sweep has the lease: the other skips its rounds, even with jobs overdue, while the
    holder renews it each round."""
    first, second, _ = pair
    assert sweeper(first).holder != sweeper(second).holder
    await register(first, "j1", 10)
    await register(first, "j2", 20)
    assert await sweeper(first).run_once(T0 + 11) == 1
    assert await sweeper(second).run_once(T0 + 21) == 0
    assert await status(second, "j2") == Status.PENDING
    assert await sweeper(first).run_once(T0 + 22) == 1  # renewed: now held until T0 + 22 + TTL
    await register(first, "j3", 30)
    assert await sweeper(second).run_once(T0 + 11 + TTL + 1) == 0
    assert await status(first, "j3") == Status.PENDING
    assert await sweeper(first).run_once(T0 + 31) == 1
    for job_id in ("j1", "j2", "j3"):
        assert [h.via for h in await first.store.list_callbacks("demo", job_id)] == ["sweep"]


async def test_another_relay_sweeps_at_once_when_the_holder_stops(
    pair: tuple[Services, Services, AsyncExitStack],
) -> None:
    """A relay that stops gives the lease up: the other sweeps in its next round, not a ttl later."""
    first, second, stack = pair
    await register(first, "j1", 10)
    await register(first, "j2", 12)
    assert await sweeper(first).run_once(T0 + 11) == 1
    assert await sweeper(second).run_once(T0 + 13) == 0
    await stack.aclose()  # the first relay stops
    assert await sweeper(second).run_once(T0 + 13) == 1
    assert await status(second, "j2") == Status.TIMED_OUT


async def test_another_relay_takes_over_when_the_lease_lapses(
    pair: tuple[Services, Services, AsyncExitStack],
) -> None:
    """A holder that stops sweeping without giving the lease up (killed, hung) keeps it for its ttl; then the
    other relay takes it, and the old holder, back, finds it taken."""
    first, second, _ = pair
    await register(first, "j1", 10)
    await register(first, "j2", 12)
    assert await sweeper(first).run_once(T0 + 11) == 1
    assert await sweeper(second).run_once(T0 + 11 + TTL - 0.01) == 0
    assert await status(second, "j2") == Status.PENDING
    assert await sweeper(second).run_once(T0 + 11 + TTL) == 1
    assert await status(second, "j2") == Status.TIMED_OUT
    await register(first, "j3", 1)
    assert await sweeper(first).run_once(T0 + 11 + TTL + 1) == 0
    assert await status(first, "j3") == Status.PENDING


async def test_two_sweepers_at_once_time_each_job_out_once(
    pair: tuple[Services, Services, AsyncExitStack],
) -> None:
    """Two relays sweeping the same overdue jobs at the same moment (both under one holder, as when a holder
    paused past its ttl resumes mid-round): each job is timed out once, with one history entry and event."""
    first, second, _ = pair
    sweeper(second).holder = sweeper(first).holder
    ids = [f"r{n}" for n in range(40)]
    for job_id in ids:
        await register(first, job_id, 10)
    handled = await asyncio.gather(sweeper(first).run_once(T0 + 11), sweeper(second).run_once(T0 + 11))
    assert list(handled) == [len(ids), len(ids)]  # both read every job as overdue
    for job_id in ids:
        assert [h.via for h in await first.store.list_callbacks("demo", job_id)] == ["sweep"]
        assert [e.type for e in await second.store.list_events("demo", job_id)] == ["job.timed_out"]
    assert await first.store.count_jobs_by_status() == {"timed_out": len(ids)}
