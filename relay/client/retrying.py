"""How `wait()` and `events()` ride through a rolling restart: retry at once, then back off (jittered,
capped), and give up once relay has not answered for `max_outage_s`."""

from __future__ import annotations

import random
import time
from collections.abc import Callable

import httpx

from relay.client.calls import connection_error
from relay.client.errors import RelayError, Unavailable

__all__ = ["Retrying", "transient"]

FIRST_DELAY_S = 0.05
MAX_DELAY_S = 2.0  # a restarting relay is back within seconds; waiting longer only delays the answer

# Errors of the request itself (a bad URL scheme, a header httpx refuses to send): retrying cannot help.
_PERMANENT = (httpx.UnsupportedProtocol, httpx.LocalProtocolError)


def transient(exc: httpx.TransportError) -> bool:
    """Whether a request that got no answer may succeed when sent again (refused, dropped, timed out)."""
    return not isinstance(exc, _PERMANENT)


class Retrying:
    """The backoff of one loop: `failed()` for an attempt relay did not answer, `slow_down()` for an answer
    that came back sooner than asked (a relay that is stopping), `reset()` once it answers as it should."""

    def __init__(
        self,
        max_outage_s: float,
        base_url: object,
        clock: Callable[[], float] = time.monotonic,
        jitter: Callable[[], float] = random.random,
    ) -> None:
        self._max_outage_s = max_outage_s
        self._base_url = base_url
        self._clock = clock
        self._jitter = jitter
        self._tries = 0
        self._failing_since: float | None = None
        self.last_error: RelayError | None = None  # set while relay is not answering

    def reset(self) -> None:
        """Relay answered as asked: the next attempt goes at once, and any outage is over."""
        self._tries = 0
        self.reachable()

    def reachable(self) -> None:
        """Relay answered: any outage is over (the backoff stays where it is)."""
        self._failing_since = None
        self.last_error = None

    def slow_down(self) -> float:
        """The delay before the next attempt: none after one early answer, then growing (with jitter)."""
        self._tries += 1
        if self._tries == 1:
            return 0.0
        delay = min(
            MAX_DELAY_S, FIRST_DELAY_S * 2.0 ** min(self._tries - 2, 16)
        )  # the cap long since reached
        return delay * (0.5 + self._jitter() / 2)  # spread many clients' retries apart

    def failed(self, error: RelayError) -> float:
        """Record an attempt relay did not answer; the delay before the next. Raises `error` once relay has
        not answered for `max_outage_s`, and at once when trying again cannot help."""
        if not isinstance(error, Unavailable) and error.status_code is not None:
            raise error
        now = self._clock()
        if self._failing_since is None:
            self._failing_since = now
        elif now - self._failing_since > self._max_outage_s:
            raise error
        self.last_error = error
        return self.slow_down()

    def transport_failed(self, exc: httpx.TransportError) -> float:
        """`failed()` for a request that got no answer at all."""
        error = connection_error(exc, self._base_url)
        if not transient(exc):
            raise error from exc
        return self.failed(error)
