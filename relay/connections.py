"""One server's open connections: the cap, the idle ones oldest first, and their deadlines swept together.

Every operation is O(1) per connection event; the periodic sweep looks only at the deadlines that passed,
because each list is kept in the order its members started (relay/http_protocol.py drives it).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import resource
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, Protocol, TypeVar

from relay.settings import Settings

__all__ = [
    "Connection",
    "ConnectionLimits",
    "ConnectionRegistry",
    "Deadlines",
    "automatic_max_connections",
    "limits_for",
    "raise_open_file_limit",
    "with_room_for_requests",
]

log = logging.getLogger(__name__)

# Descriptors besides client sockets: stdio, listeners, the event loop's own, SQLite's database, WAL and
# shared-memory files per connection, resolver threads, and some slack for what comes later.
_RESERVED_FDS = 256
_UNLIMITED_FALLBACK = 10_240  # macOS's OPEN_MAX, which Go uses when the hard limit reads as unlimited
_AUTOMATIC_CEILING = 50_000  # memory, not descriptors, bounds an automatic cap above this
_LINGER_S = 2.0  # how long a refused request's remaining bytes are read and dropped, so its client reads why
_SWEEP_MAX_S = 1.0  # the slowest sweep: timeouts land within this of their due time

K = TypeVar("K")


class Connection(Protocol):
    """What the registry asks of a connection when a limit is reached."""

    def close_now(self) -> None:
        """Close at once, and forget itself: evicted at the cap, its headers too slow, or lingered out."""

    def body_expired(self) -> None:
        """Its body did not arrive within the body timeout."""


C = TypeVar("C", bound=Connection)


@dataclass(frozen=True)
class ConnectionLimits:
    """The bounds one server process applies to its clients' connections."""

    max_connections: int
    header_timeout_s: float
    body_timeout_s: float
    max_header_bytes: int
    max_headers: int

    @property
    def sweep_every_s(self) -> float:
        """Often enough that a timeout fires within an eighth of itself (and within a second)."""
        return max(0.01, min(_SWEEP_MAX_S, self.header_timeout_s / 8, self.body_timeout_s / 8))


class Deadlines(OrderedDict[K, float]):
    """Members with the time each was added, oldest first, so the expired ones are all at the front.

    A plain ordered dict, so that adding (`d[key] = now`) and removing (`d.pop(key, None)`) cost no Python
    call: a key must not be added while it is a member (its place would no longer match its time).
    """

    def __init__(self, timeout_s: float) -> None:
        super().__init__()
        self.timeout_s = timeout_s

    def expired(self, now: float) -> list[K]:
        """Remove and answer the members whose timeout has passed."""
        cutoff, gone = now - self.timeout_s, []
        while self:
            key, started = next(iter(self.items()))
            if started > cutoff:
                break
            del self[key]
            gone.append(key)
        return gone


class ConnectionRegistry(Generic[C]):
    """The connections of one server: which may be evicted (idle ones first), and whose clocks run.

    `idle` holds the connections with no request in progress (reading a request's headers, or kept alive
    between requests), longest idle first; `heads`, `bodies` and `lingering` the ones whose headers, body or
    refusal is under way. The protocol moves a connection between them itself, each move one dict operation
    (a request is in progress: out of `idle` and `heads`; answered: back at the end of `idle`).
    """

    def __init__(
        self, limits: ConnectionLimits, clock: Callable[[], float] = time.monotonic, *, autosweep: bool = True
    ) -> None:
        self.limits = limits
        self.clock = clock
        self.idle: OrderedDict[C, None] = OrderedDict()
        self.heads: Deadlines[C] = Deadlines(limits.header_timeout_s)
        self.bodies: Deadlines[C] = Deadlines(limits.body_timeout_s)
        self.lingering: Deadlines[C] = Deadlines(_LINGER_S)
        self._live: set[C] = set()
        self._autosweep = autosweep
        self._timer: asyncio.TimerHandle | None = None

    def __len__(self) -> int:
        return len(self._live)

    def admit(self, conn: C) -> bool:
        """Take a new connection; at the cap, evict the one idle the longest, else the one whose body has
        been arriving the longest (a request not received yet is no work yet, and slow bodies would
        otherwise pin the cap). False when every connection's request has been received."""
        if len(self._live) >= self.limits.max_connections:
            if not self.idle and not self.bodies:
                return False
            next(iter(self.idle or self.bodies)).close_now()  # which forgets it: its place is free
        self._live.add(conn)
        self.idle[conn] = None
        self.heads[conn] = self.clock()  # a first request's clock starts at the connection's
        if self._timer is None and self._autosweep:
            self._arm()
        return True

    def forget(self, conn: C) -> None:
        """`conn` is closed or closing: it no longer counts, and no clock of its runs.

        A connection forgets itself, in `close_now` (every close relay asks for, the registry's included)
        and when its transport is lost (a close the client made); the registry never does it for it.
        """
        self._live.discard(conn)
        self.idle.pop(conn, None)
        self.heads.pop(conn, None)
        self.bodies.pop(conn, None)
        self.lingering.pop(conn, None)

    def sweep(self, now: float) -> int:
        """Act on every deadline that has passed; answer how many there were."""
        closing = self.heads.expired(now) + self.lingering.expired(now)
        stalled = self.bodies.expired(now)
        for conn in closing:
            conn.close_now()
        for conn in stalled:
            conn.body_expired()
        return len(closing) + len(stalled)

    def _arm(self) -> None:
        self._timer = asyncio.get_running_loop().call_later(self.limits.sweep_every_s, self._tick)

    def _tick(self) -> None:
        self._timer = None
        try:
            self.sweep(self.clock())
        finally:  # one failed sweep must not stop the ones after it
            if self._live:
                self._arm()


def raise_open_file_limit() -> int:
    """Raise the soft RLIMIT_NOFILE to the hard one (as Go and nginx do) and answer the soft limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = _UNLIMITED_FALLBACK if hard == resource.RLIM_INFINITY else hard
    if soft != resource.RLIM_INFINITY and soft < target:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError):  # a sandbox may refuse: keep the limit we have
            log.warning("could not raise the open-file limit from %d to %d", soft, target)
    return _UNLIMITED_FALLBACK if soft == resource.RLIM_INFINITY else soft


def automatic_max_connections(fd_limit: int, settings: Settings) -> int:
    """The open-file limit less room for SQLite, listeners and outbound sockets (in flight and pooled)."""
    reserve = _RESERVED_FDS + 2 * (settings.delivery_concurrency + settings.reconcile_concurrency)
    return min(_AUTOMATIC_CEILING, max(fd_limit - reserve, fd_limit // 2))


def limits_for(settings: Settings, fd_limit: int) -> ConnectionLimits:
    """The connection limits `settings` ask for, with the automatic cap worked out from `fd_limit`."""
    return ConnectionLimits(
        max_connections=settings.max_connections or automatic_max_connections(fd_limit, settings),
        header_timeout_s=settings.header_timeout_s,
        body_timeout_s=settings.body_timeout_s,
        max_header_bytes=settings.max_header_bytes,
        max_headers=settings.max_headers,
    )


def with_room_for_requests(settings: Settings, max_connections: int) -> Settings:
    """`settings` with `max_waiters` lowered, if need be, so that held long-polls and streams (which are
    requests in progress, never evicted) leave a tenth of the connections to callbacks and health checks."""
    most = max(1, max_connections - max(1, max_connections // 10))
    if settings.max_waiters <= most:
        return settings
    # Lowering the default is the design (docs/decisions.md); lowering a value someone chose deserves a word.
    level = logging.INFO if settings.max_waiters == Settings.max_waiters else logging.WARNING
    log.log(
        level,
        "max_waiters %d lowered to %d: long-polls leave room for callbacks within max_connections %d",
        settings.max_waiters,
        most,
        max_connections,
    )
    return dataclasses.replace(settings, max_waiters=most)
