"""A loop that works through claims held under a lease: one task per claim, a bounded number in flight per
key (endpoint, host), results recorded by the next round, and what is left drained at stop.

Subclasses say how work is recovered at start, how a claim is processed and judged, and how results are
recorded; `run_once` claims within the room `in_flight` and `_in_flight_by_key` leave and calls `start`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Generic, TypeVar

from relay.loops import Loop

__all__ = ["LeasedWorkLoop", "count_down"]

ClaimT = TypeVar("ClaimT")
ResultT = TypeVar("ResultT")


class LeasedWorkLoop(Loop, Generic[ClaimT, ResultT]):
    """Recovers leased work at start, runs each claim as its own task, and drains them when stopped."""

    def __init__(self, interval_s: float, clock: Callable[[], float]) -> None:
        super().__init__(interval_s, clock)
        self._in_flight_by_key: dict[str, int] = {}  # tasks running, per key
        self._tasks: set[asyncio.Task[None]] = set()
        self._settled: list[ResultT] = []  # work ended, waiting for the next round to record it
        self._filled = False  # the last claim took all the room it was given: more may be due

    @property
    def in_flight(self) -> int:
        """Claims being processed now."""
        return len(self._tasks)

    async def recover(self) -> None:
        """Make work a previous process left in flight due again (failures logged, not raised)."""
        raise NotImplementedError

    async def record(self, settled: list[ResultT], now: float) -> None:
        """Store the results of work that ended."""
        raise NotImplementedError

    def key_of(self, claim: ClaimT) -> str:
        """What in-flight work is counted by (an endpoint, a host)."""
        raise NotImplementedError

    def task_name(self, claim: ClaimT) -> str:
        raise NotImplementedError

    async def process(self, claim: ClaimT, now: float, round_started: float) -> ResultT:
        """Do one claim's work and judge it."""
        raise NotImplementedError

    def process_failed(self, claim: ClaimT) -> None:
        """Called inside the `except` when `process` raised: the claim is left to its lease."""
        raise NotImplementedError

    async def run(self, stop: asyncio.Event) -> None:
        """Recover work a previous process left in flight, then work until stopped."""
        await self.recover()
        try:
            await super().run(stop)
            await self.drain()  # the app bounds this by its grace period, then cancels us
        finally:
            for task in self._tasks:
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)

    def go_again(self, done: int) -> bool:
        # A claim that got less than the room it asked for took everything claimable: another round finds
        # nothing until work ends or is queued, and both wake the loop. Work that ended during this round is
        # such a wake already: the next round starts without the pause.
        return self._filled or bool(self._settled)

    async def drain(self) -> None:
        """Wait until every claim started so far has been processed, and record them."""
        while self._tasks:  # a task that ends may start another
            await asyncio.gather(*list(self._tasks), return_exceptions=True)
        await self.record(self._take_settled(), self.clock())

    def _take_settled(self) -> list[ResultT]:
        settled, self._settled = self._settled, []
        return settled

    def start(self, claim: ClaimT, now: float, round_started: float) -> None:
        """Start processing `claim` in its own task, counted in flight at its key until it ends."""
        key = self.key_of(claim)
        self._in_flight_by_key[key] = self._in_flight_by_key.get(key, 0) + 1
        task = asyncio.create_task(self._work(claim, now, round_started), name=self.task_name(claim))
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)

    async def _work(self, claim: ClaimT, now: float, round_started: float) -> None:
        """One claim, judged; the loop's next round records it. Its slot is given back whatever happens."""
        try:
            result = await self.process(claim, now, round_started)
            self._settled.append(result)  # after the await: a round may have taken the list meanwhile
        except Exception:  # the lease expires and the claim is processed again
            self.process_failed(claim)
        finally:
            self.slot_freed(claim)
            self.wake()

    def slot_freed(self, claim: ClaimT) -> None:
        """Give back the slot `claim` held at its key."""
        count_down(self._in_flight_by_key, self.key_of(claim))


def count_down(counts: dict[str, int], key: str) -> None:
    """One fewer at `key`, which is dropped at zero."""
    left = counts[key] - 1
    if left:
        counts[key] = left
    else:
        del counts[key]
