"""In-process wake-ups for waiters: a hint that a job changed, carrying the committed job when known."""

from __future__ import annotations

import asyncio

from relay.errors import ServiceUnavailable
from relay.models import Job

__all__ = ["Hub", "Subscription", "Waiter"]


class Waiter:
    """One subscriber's mailbox: the latest job published for its key, and a flag to wake on.

    A bare future per wait, not an `asyncio.Event` (which carries a deque of its own): thousands are held at
    once, so each one's size counts.
    """

    __slots__ = ("_future", "_woken", "job")

    def __init__(self) -> None:
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
            loop = asyncio.get_running_loop()
            self._future = future = loop.create_future()
            timer = loop.call_later(seconds, _time_up, future)
            try:
                if not await future:
                    return False
            finally:
                timer.cancel()
                self._future = None
        self._woken = False
        return True


def _time_up(future: asyncio.Future[bool]) -> None:
    if not future.done():
        future.set_result(False)


class Hub:
    """Keys are `(source, job_id)`. Publishing is a hint: the store stays the truth."""

    def __init__(self, max_waiters: int) -> None:
        self._waiters: dict[tuple[str, str], set[Waiter]] = {}
        self._count = 0
        self.max_waiters = max_waiters
        self.closing = False

    def close(self) -> None:
        """Shutdown has begun: wake every waiter so it answers now, and take no new ones."""
        self.closing = True
        for waiters in self._waiters.values():
            for waiter in waiters:
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
        waiter = Waiter()
        self._waiters.setdefault(key, set()).add(waiter)
        self._count += 1
        return waiter

    def _remove(self, key: tuple[str, str], waiter: Waiter) -> None:
        self._count -= 1
        waiters = self._waiters[key]
        waiters.discard(waiter)
        if not waiters:
            del self._waiters[key]

    def publish(self, key: tuple[str, str], job: Job | None = None) -> int:
        """Wake every waiter of `key`; answer how many."""
        waiters = self._waiters.get(key)
        if not waiters:
            return 0
        for waiter in waiters:
            waiter.wake(job)
        return len(waiters)


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
