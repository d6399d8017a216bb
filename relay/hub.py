"""In-process wake-ups for waiters: a hint that a job changed, carrying the committed job when known."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from relay.errors import ServiceUnavailable
from relay.models import Job

__all__ = ["Hub", "Waiter"]


class Waiter:
    """One subscriber's mailbox: the latest job published for its key, and an event to wake on."""

    __slots__ = ("_event", "job")

    def __init__(self) -> None:
        self._event = asyncio.Event()
        self.job: Job | None = None

    def wake(self, job: Job | None = None) -> None:
        """Wake the waiter, leaving `job` for it when the publisher had the committed job at hand."""
        if job is not None:
            self.job = job
        self._event.set()

    async def wait(self, seconds: float) -> bool:
        """Wait until woken or `seconds` pass; answer whether it was woken. Re-arms for the next wait."""
        try:
            async with asyncio.timeout(seconds):
                await self._event.wait()
        except TimeoutError:
            return False
        self._event.clear()
        return True


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

    @asynccontextmanager
    async def subscribe(self, key: tuple[str, str]) -> AsyncIterator[Waiter]:
        """Hold a waiter for `key` while the block runs; it is always released, even on cancellation."""
        if self.closing:
            raise ServiceUnavailable("relay is shutting down; retry on another instance", "shutting_down")
        if self._count >= self.max_waiters:
            raise ServiceUnavailable(f"too many waiters held ({self.max_waiters})", "too_many_waiters")
        waiter = Waiter()
        self._waiters.setdefault(key, set()).add(waiter)
        self._count += 1
        try:
            yield waiter
        finally:
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
