"""Background loops: `run_once(now)` does one round (tests call it), `run(stop)` repeats it, and
`supervise(loop, stop)` restarts a `run` that died."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from relay.logs import log_event

__all__ = ["FAILING_ROUNDS", "Loop", "supervise"]

log = logging.getLogger(__name__)

# Rounds failed in a row before /healthz reports the loop: one or two are a blip the backoff rides out.
FAILING_ROUNDS = 3


def _backoff(failures: int) -> float:
    # The exponent is capped: 2.0 ** 1024 overflows, which would kill a loop after its 1024th failure.
    return min(0.1 * 2.0 ** min(failures, 10), 30.0)


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


class Loop:
    """A worker that wakes on a hint, on its poll interval, or stops; it never dies silently.

    Subclasses implement `run_once(now) -> count`. A round that did work is followed at once by another,
    so a backlog drains without waiting for the interval. A round is clean once its work and its wait both
    ended without an exception; `problem()` tells /healthz about a loop that is not having clean rounds.
    """

    name = "loop"

    def __init__(self, interval_s: float, clock: Callable[[], float] = time.time) -> None:
        self.interval_s = interval_s
        self.clock = clock
        self._wake = asyncio.Event()
        self.failures = 0  # rounds failed in a row
        self.crashes = 0  # times `run` died since the last clean round
        self.last_error: str | None = None
        self.last_success_at: float | None = None  # when a round last ended without an exception (/metrics)

    def wake(self) -> None:
        """Ask for a round now (a hint; the poll interval catches a lost one)."""
        self._wake.set()

    async def run_once(self, now: float) -> int:
        """One round of work at time `now`; answer how much was done."""
        raise NotImplementedError

    def go_again(self, done: int) -> bool:
        """Whether the next round should start at once: it did work, so more may be waiting."""
        return done > 0

    def problem(self) -> str | None:
        """Why this loop is unwell (dead, or failing round after round), by name; None while it runs clean."""
        if self.crashes:
            return (
                f"the {self.name} loop died ({self.last_error}) and is being restarted;"
                f" {self.crashes} time(s) since its last clean round"
            )
        if self.failures >= FAILING_ROUNDS:
            return f"the {self.name} loop failed its last {self.failures} rounds: {self.last_error}"
        return None

    def crashed(self, exc: BaseException) -> None:
        """Note that `run` died with `exc` (called by `supervise`)."""
        self.crashes += 1
        self.last_error = _describe(exc)

    async def run(self, stop: asyncio.Event) -> None:
        """Repeat rounds until `stop` is set; an exception is logged and followed by a short backoff."""
        while not stop.is_set():
            self._wake.clear()
            try:
                done = await self.run_once(self.clock())
            except Exception as exc:
                self.failures += 1
                self.last_error = _describe(exc)
                log_event(
                    log,
                    logging.ERROR,
                    "loop.round_failed",
                    loop=self.name,
                    failures=self.failures,
                    error=self.last_error,
                    exc_info=True,
                )
                await self._pause(stop, _backoff(self.failures))
                continue
            self.last_success_at = self.clock()
            if not self.go_again(done):
                await self._pause(stop, self.interval_s)
            self.failures = self.crashes = 0

    async def _pause(self, stop: asyncio.Event, seconds: float) -> None:
        stopping = asyncio.ensure_future(stop.wait())
        woken = asyncio.ensure_future(self._wake.wait())
        try:
            await asyncio.wait((stopping, woken), timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopping.cancel()
            woken.cancel()


async def supervise(loop: Loop, stop: asyncio.Event) -> None:
    """Run `loop.run(stop)` until `stop` is set; a run that ends any other way is logged and restarted
    after a backoff that grows with each death since the loop's last clean round."""
    while not stop.is_set():
        try:
            await loop.run(stop)
        except Exception as exc:
            loop.crashed(exc)
            log_event(
                log,
                logging.ERROR,
                "loop.died",
                loop=loop.name,
                crashes=loop.crashes,
                error=loop.last_error,
                exc_info=True,
            )
        else:
            if stop.is_set():
                return
            loop.crashed(RuntimeError("run() returned while the app was running"))
            log_event(log, logging.ERROR, "loop.returned", loop=loop.name, crashes=loop.crashes)
        delay = _backoff(loop.crashes)
        log_event(log, logging.WARNING, "loop.restarting", loop=loop.name, delay_s=round(delay, 2))
        try:
            # Not the loop's own pause, which may be what failed.
            await asyncio.wait_for(stop.wait(), delay)
        except TimeoutError:
            pass
