"""Background loops: `run_once(now)` does one round (tests call it), `run(stop)` repeats it."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

__all__ = ["Loop"]

log = logging.getLogger(__name__)


class Loop:
    """A worker that wakes on a hint, on its poll interval, or stops; it never dies silently.

    Subclasses implement `run_once(now) -> count`. A round that did work is followed at once by another,
    so a backlog drains without waiting for the interval.
    """

    name = "loop"

    def __init__(self, interval_s: float, clock: Callable[[], float] = time.time) -> None:
        self.interval_s = interval_s
        self.clock = clock
        self._wake = asyncio.Event()

    def wake(self) -> None:
        """Ask for a round now (a hint; the poll interval catches a lost one)."""
        self._wake.set()

    async def run_once(self, now: float) -> int:
        """One round of work at time `now`; answer how much was done."""
        raise NotImplementedError

    def go_again(self, done: int) -> bool:
        """Whether the next round should start at once: it did work, so more may be waiting."""
        return done > 0

    async def run(self, stop: asyncio.Event) -> None:
        """Repeat rounds until `stop` is set; an exception is logged and followed by a short backoff."""
        failures = 0
        while not stop.is_set():
            self._wake.clear()
            try:
                done = await self.run_once(self.clock())
                failures = 0
            except Exception:
                failures += 1
                log.exception("%s round failed (%d in a row)", self.name, failures)
                done = 0
                await self._pause(stop, min(0.1 * 2**failures, 30.0))
                continue
            if not self.go_again(done):
                await self._pause(stop, self.interval_s)

    async def _pause(self, stop: asyncio.Event, seconds: float) -> None:
        stopping = asyncio.ensure_future(stop.wait())
        woken = asyncio.ensure_future(self._wake.wait())
        try:
            await asyncio.wait((stopping, woken), timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopping.cancel()
            woken.cancel()
