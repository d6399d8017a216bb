"""The SSE heartbeat comes every `sse_heartbeat_s` of quiet, whatever the waiter's poll interval and however
often the stream is woken without an event: measured over real HTTP."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest

from tests.conftest import LiveRelay, start_relay
from tests.integration.conftest import SettingsWith

pytestmark = pytest.mark.sqlite_only("the stream's timing, the same on every backend")

HEARTBEAT = ": heartbeat"
# How late a heartbeat may come on a busy machine (the bugs this guards against made it late by a poll).
LATE_S = 0.25
EARLY_S = 0.02  # the client's clock starts a little after the stream's


async def heartbeat_times(lines: AsyncIterator[str], count: int, started: float) -> list[float]:
    """Seconds from `started` to each of the next `count` heartbeats (failing after 5 s)."""
    times: list[float] = []
    async with asyncio.timeout(5):
        async for line in lines:
            if line == HEARTBEAT:
                times.append(time.monotonic() - started)
                if len(times) == count:
                    return times
    raise AssertionError(f"the stream ended after {len(times)} heartbeats")


async def test_heartbeat_every_interval_with_a_poll_just_shorter(settings_with: SettingsWith) -> None:
    """A poll interval just under the heartbeat's does not stretch it to two polls."""
    heartbeat_s = 0.3
    settings = settings_with(sse_heartbeat_s=heartbeat_s, waiter_poll_s=0.29)
    async with start_relay(settings) as relay:
        async with relay.client.stream("GET", "/v1/jobs/demo/j1/events") as response:
            started = time.monotonic()
            times = await heartbeat_times(response.aiter_lines(), 3, started)
    gaps = [later - earlier for earlier, later in zip([0.0, *times], times, strict=False)]
    assert all(gap >= heartbeat_s - EARLY_S for gap in gaps), gaps
    assert times[-1] <= 3 * heartbeat_s + LATE_S, times


async def test_heartbeat_on_time_while_woken_without_events(settings_with: SettingsWith) -> None:
    """Wake-ups that bring no event (another instance's change, a missed-notification sweep) neither hold
    the heartbeat back nor bring it early; the poll interval is far longer than the heartbeat."""
    heartbeat_s = 0.2
    async with start_relay(settings_with(sse_heartbeat_s=heartbeat_s, waiter_poll_s=10.0)) as relay:
        async with relay.client.stream("GET", "/v1/jobs/demo/j1/events") as response:
            started = time.monotonic()
            waking = asyncio.create_task(_wake_every(relay, 0.05))
            try:
                times = await heartbeat_times(response.aiter_lines(), 2, started)
            finally:
                waking.cancel()
    assert heartbeat_s - EARLY_S <= times[0] <= heartbeat_s + LATE_S, times
    assert times[1] - times[0] >= heartbeat_s - EARLY_S and times[1] <= 2 * heartbeat_s + LATE_S, times


async def _wake_every(relay: LiveRelay, seconds: float) -> None:
    """Publish the stream's job again and again with no change: what a change feed does for another job's
    instance, or `wake_all` after a missed notification."""
    while True:
        relay.services.hub.publish(("demo", "j1"))
        await asyncio.sleep(seconds)
