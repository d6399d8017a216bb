"""In-process wake-ups for waiters: a hint that a job changed, carrying the committed job when known.

Thousands of long-polls are held at once, so what each one holds is kept small: a slotted waiter, a bare
future per wait (not an `asyncio.Event`, which carries a deque of its own), one shared timer for every
waiter's time limit (not a `call_later` handle each), and a key with one waiter maps to it directly.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
from collections.abc import Iterable

from relay.errors import ServiceUnavailable
from relay.models import Job

__all__ = ["Hub", "Subscription", "Waiter"]


class _Deadlines:
    """Time limits of many waits in one heap, with one loop timer armed for the earliest."""

    __slots__ = ("_heap", "_order", "_timer", "_timer_at")

    # uvloop's clock and timers count whole milliseconds, so its timer may fire up to half of one early.
    _SLACK_S = 0.001

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, asyncio.Future[bool]]] = []
        self._order = itertools.count()
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = 0.0

    def add(self, future: asyncio.Future[bool], seconds: float) -> None:
        """Resolve `future` with False once `seconds` have passed, unless it is done by then."""
        loop = future.get_loop()
        when = loop.time() + seconds
        heapq.heappush(self._heap, (when, next(self._order), future))
        if self._timer is None or when < self._timer_at:
            self._arm(loop, when)

    def _arm(self, loop: asyncio.AbstractEventLoop, when: float) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer = loop.call_at(when, self._expire, loop)
        self._timer_at = when

    def _expire(self, loop: asyncio.AbstractEventLoop) -> None:
        self._timer = None
        heap = self._heap
        due = loop.time() + self._SLACK_S
        while heap and heap[0][0] <= due:
            future = heapq.heappop(heap)[2]
            if not future.done():  # woken or cancelled meanwhile: its entry only waited to be dropped
                future.set_result(False)
        if heap:
            self._arm(loop, heap[0][0])


class Waiter:
    """One subscriber's mailbox: the latest job published for its key, and a flag to wake on."""

    __slots__ = ("_deadlines", "_future", "_woken", "job")

    def __init__(self, deadlines: _Deadlines | None = None) -> None:
        self._deadlines = deadlines or _Deadlines()
        self._woken = False
        self._future: asyncio.Future[bool] | None = None
        self.job: Job | None = None

    def wake(self, job: Job | None = None) -> None:
        """Wake the waiter, leaving `job` for it when the publisher had the committed job at hand."""
        if job is not None:
            self.job = job
        self._woken = True
        if self._future is not None and not self._future.done():
            self._future.set_result(True)

    async def wait(self, seconds: float) -> bool:
        """Wait until woken or `seconds` pass; answer whether it was woken. Re-arms for the next wait."""
        if not self._woken:
            self._future = future = asyncio.get_running_loop().create_future()
            self._deadlines.add(future, seconds)
            try:
                if not await future:
                    return False
            finally:
                self._future = None
        self._woken = False
        return True


class Hub:
    """Keys are `(source, job_id)`. Publishing is a hint: the store stays the truth."""

    def __init__(self, max_waiters: int) -> None:
        # Most keys have one waiter: it is the value itself, and a set only once a second one comes.
        self._waiters: dict[tuple[str, str], Waiter | set[Waiter]] = {}
        self._deadlines = _Deadlines()
        self._count = 0
        self.max_waiters = max_waiters
        self.closing = False

    def close(self) -> None:
        """Shutdown has begun: wake every waiter so it answers now, and take no new ones."""
        self.closing = True
        self.wake_all()

    def wake_all(self) -> None:
        """Wake every waiter without a job: each reads the store again."""
        for held in self._waiters.values():
            for waiter in _each(held):
                waiter.wake()

    @property
    def count(self) -> int:
        """How many waiters are held now."""
        return self._count

    def subscribe(self, key: tuple[str, str]) -> Subscription:
        """Hold a waiter for `key` while the `async with` block runs; always released, even if cancelled."""
        return Subscription(self, key)

    def _add(self, key: tuple[str, str]) -> Waiter:
        if self.closing:
            raise ServiceUnavailable("relay is shutting down; retry on another instance", "shutting_down")
        if self._count >= self.max_waiters:
            raise ServiceUnavailable(f"too many waiters held ({self.max_waiters})", "too_many_waiters")
        waiter = Waiter(self._deadlines)
        held = self._waiters.get(key)
        if held is None:
            self._waiters[key] = waiter
        elif isinstance(held, Waiter):
            self._waiters[key] = {held, waiter}
        else:
            held.add(waiter)
        self._count += 1
        return waiter

    def _remove(self, key: tuple[str, str], waiter: Waiter) -> None:
        self._count -= 1
        held = self._waiters[key]
        if held is waiter:
            del self._waiters[key]
        elif isinstance(held, set):
            held.discard(waiter)
            if not held:
                del self._waiters[key]

    def publish(self, key: tuple[str, str], job: Job | None = None) -> int:
        """Wake every waiter of `key`; answer how many."""
        held = self._waiters.get(key)
        if held is None:
            return 0
        woken = 0
        for waiter in _each(held):
            waiter.wake(job)
            woken += 1
        return woken


def _each(held: Waiter | set[Waiter]) -> Iterable[Waiter]:
    return (held,) if isinstance(held, Waiter) else held


class Subscription:
    """`async with hub.subscribe(key) as waiter`: registers on entry, releases on exit.

    A slotted class rather than `@asynccontextmanager`: one is held per long-poll, and a generator-based
    context manager with its frame costs several times as much memory.
    """

    __slots__ = ("_hub", "_key", "_waiter")

    def __init__(self, hub: Hub, key: tuple[str, str]) -> None:
        self._hub = hub
        self._key = key
        self._waiter: Waiter | None = None

    async def __aenter__(self) -> Waiter:
        self._waiter = self._hub._add(self._key)
        return self._waiter

    async def __aexit__(self, *exc_info: object) -> None:
        if self._waiter is not None:
            self._hub._remove(self._key, self._waiter)
            self._waiter = None
