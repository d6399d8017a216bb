"""Leases: one holder at a time of a named task across the relay processes on one database (the sweeper's).

A lease is a row of `leases (name, holder, expires_at)`. Taking it is one conditional statement, the same on
every backend: a new row, or an update of the row when this holder has it already (a renewal) or when it has
expired; another holder's live lease is left as it stands, and the taker is told so by the count of rows
written. Releasing deletes the row only when this holder has it. Times are the takers' clocks (unix seconds):
clocks that disagree move a takeover by their difference; two holders overlap only past a ttl's worth.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

__all__ = ["RELEASE_LEASE_SQL", "TAKE_LEASE_SQL", "HeldLeases"]

log = logging.getLogger(__name__)

# Bound: name, holder, expires_at (now + ttl), now.
TAKE_LEASE_SQL = (
    "INSERT INTO leases (name, holder, expires_at) VALUES (?, ?, ?)"
    " ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, expires_at = excluded.expires_at"
    " WHERE leases.holder = excluded.holder OR leases.expires_at <= ?"
)
# Bound: name, holder.
RELEASE_LEASE_SQL = "DELETE FROM leases WHERE name = ? AND holder = ?"


# How long a store that is closing waits to give its leases up; past it they lapse at their expiry.
RELEASE_WAIT_S = 2.0


class HeldLeases:
    """The leases taken through one store and not yet given up: the store's `close` releases them, so a
    relay that stops lets another take over at once instead of after the ttl."""

    def __init__(self) -> None:
        self._holders: dict[str, str] = {}

    def note(self, name: str, holder: str, taken: bool) -> bool:
        """Record the outcome of a take; answer `taken`."""
        if taken:
            self._holders[name] = holder
        else:
            self.forget(name, holder)
        return taken

    def forget(self, name: str, holder: str) -> None:
        """`holder` no longer has the lease `name` (released, or taken by another)."""
        if self._holders.get(name) == holder:
            del self._holders[name]

    async def release_all(self, release: Callable[[str, str], Awaitable[None]]) -> None:
        """Give up every lease held, each within `RELEASE_WAIT_S`; one that fails lapses at its expiry."""
        for name, holder in list(self._holders.items()):
            try:
                async with asyncio.timeout(RELEASE_WAIT_S):
                    await release(name, holder)
            except Exception as exc:  # a database gone at shutdown: the lease lapses instead
                log.warning("lease %r of %s not released (%r); it lapses at its expiry", name, holder, exc)
