"""In-process waiters: subscribe, publish, release, bounds."""

from __future__ import annotations

import asyncio

import pytest

from relay.errors import ServiceUnavailable
from relay.hub import Hub
from relay.models import Job, Status

A = ("replicate", "a")
B = ("replicate", "b")
A_OTHER_SOURCE = ("demo", "a")
NOT_WOKEN = 0.01  # a bound on a wait that must time out, not a sleep for state
WOKEN = 5.0  # a bound on a wait that must return at once


def make_job(job_id: str = "a") -> Job:
    return Job("replicate", job_id, Status.SUCCEEDED, None, None, False, {}, 0.0, 0.0, 0.0, None, 1)


async def test_publish_wakes_exactly_the_waiters_of_its_key() -> None:
    """Publishing a key wakes its waiters and no waiter of another key or source."""
    hub = Hub(max_waiters=10)
    async with (
        hub.subscribe(A) as a1,
        hub.subscribe(A) as a2,
        hub.subscribe(B) as b,
        hub.subscribe(A_OTHER_SOURCE) as other,
    ):
        assert hub.publish(A) == 2
        assert await a1.wait(WOKEN)
        assert await a2.wait(WOKEN)
        assert not await b.wait(NOT_WOKEN)
        assert not await other.wait(NOT_WOKEN)


async def test_publish_wakes_a_waiter_already_waiting() -> None:
    """A waiter blocked in `wait` returns True once its key is published."""
    hub = Hub(max_waiters=10)
    async with hub.subscribe(A) as waiter:
        task = asyncio.create_task(waiter.wait(WOKEN))
        await asyncio.sleep(0)  # one loop turn (no time passes): the task runs until it blocks in wait
        assert not task.done()
        assert hub.publish(A) == 1
        assert await task


async def test_publish_hands_over_the_job() -> None:
    """The published job is left on the waiter; a bare publish keeps the last one."""
    hub = Hub(max_waiters=10)
    job = make_job()
    async with hub.subscribe(A) as waiter:
        assert waiter.job is None
        hub.publish(A, job)
        assert await waiter.wait(WOKEN)
        assert waiter.job is job
        hub.publish(A)
        assert await waiter.wait(WOKEN)
        assert waiter.job is job


async def test_publish_without_waiters_wakes_nobody() -> None:
    """Publishing a key nobody waits for answers 0."""
    hub = Hub(max_waiters=10)
    assert hub.publish(A) == 0
    async with hub.subscribe(B):
        assert hub.publish(A) == 0


async def test_wait_times_out_and_rearms() -> None:
    """`wait` answers False on timeout, and after a wake-up it waits again for the next one."""
    hub = Hub(max_waiters=10)
    async with hub.subscribe(A) as waiter:
        assert not await waiter.wait(NOT_WOKEN)
        hub.publish(A)
        assert await waiter.wait(WOKEN)
        assert not await waiter.wait(NOT_WOKEN)


async def test_a_publish_before_wait_is_not_lost() -> None:
    """A publish between subscribe and wait is kept: the next wait returns True at once."""
    hub = Hub(max_waiters=10)
    async with hub.subscribe(A) as waiter:
        hub.publish(A)
        assert await waiter.wait(0)


async def test_count_returns_to_zero_on_normal_exit() -> None:
    """The waiter count rises inside the block and falls back to zero after it."""
    hub = Hub(max_waiters=10)
    async with hub.subscribe(A):
        assert hub.count == 1
        async with hub.subscribe(A):
            assert hub.count == 2
        assert hub.count == 1
        assert hub.publish(A) == 1
    assert hub.count == 0
    assert hub.publish(A) == 0


async def test_count_returns_to_zero_on_exception() -> None:
    """An exception inside the block still releases the waiter."""
    hub = Hub(max_waiters=10)
    with pytest.raises(RuntimeError, match="boom"):
        async with hub.subscribe(A):
            assert hub.count == 1
            raise RuntimeError("boom")
    assert hub.count == 0
    assert hub.publish(A) == 0


async def test_count_returns_to_zero_on_cancellation() -> None:
    """Cancelling a task blocked in `wait` (a client hanging up) releases its waiter."""
    hub = Hub(max_waiters=10)
    entered = asyncio.Event()

    async def long_poll() -> None:
        async with hub.subscribe(A) as waiter:
            entered.set()
            await waiter.wait(60)

    task = asyncio.create_task(long_poll())
    await asyncio.wait_for(entered.wait(), WOKEN)
    assert hub.count == 1
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert hub.count == 0
    assert hub.publish(A) == 0


async def test_max_waiters_refuses_with_service_unavailable() -> None:
    """Beyond `max_waiters` a subscribe is refused with 503, and a released slot can be taken again."""
    hub = Hub(max_waiters=2)
    async with hub.subscribe(A), hub.subscribe(B):
        with pytest.raises(ServiceUnavailable) as info:
            async with hub.subscribe(A):
                pytest.fail("a third waiter was admitted")
        assert info.value.status == 503
        assert info.value.code == "too_many_waiters"
        assert hub.count == 2
    assert hub.count == 0
    async with hub.subscribe(A), hub.subscribe(A):
        assert hub.count == 2


async def test_close_wakes_every_waiter_and_refuses_new_ones() -> None:
    """On shutdown every held waiter is woken, and a new subscribe is refused with 503 shutting_down."""
    hub = Hub(max_waiters=10)
    async with hub.subscribe(A) as a, hub.subscribe(B) as b:
        hub.close()
        assert await a.wait(WOKEN)
        assert await b.wait(WOKEN)
        with pytest.raises(ServiceUnavailable) as info:
            async with hub.subscribe(A):
                pytest.fail("a waiter was admitted after close")
        assert info.value.code == "shutting_down"
        assert hub.count == 2
    assert hub.count == 0
