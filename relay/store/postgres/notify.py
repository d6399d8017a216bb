"""Wake-ups across relay processes on one PostgreSQL: NOTIFY inside the committing transaction, and one
listening connection per process.

A notification is sent by relay's own statement late in the transaction that made the change (never a
trigger per row), so it reaches listeners at COMMIT and never for a change rolled back. It is a hint, like
the in-process hub's: whoever is woken reads the database. A process that lost its listening connection may
have missed some, so it wakes everything it holds once it is listening again (`Changes.missed`).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import asyncpg
import orjson

from relay.loops import Loop
from relay.store.changes import Changes

if TYPE_CHECKING:
    from asyncpg import Connection

__all__ = [
    "JOBS_CHANNEL",
    "OUTBOX_CHANNEL",
    "Listener",
    "job_payload",
    "notify_job",
    "notify_job_sql",
    "notify_outbox",
]

log = logging.getLogger(__name__)

JOBS_CHANNEL = "relay_jobs"  # payload: JSON [source, job_id] (a job ID is at most 256 characters)
OUTBOX_CHANNEL = "relay_outbox"  # empty payload: one per transaction however many it queued
# How often the listening connection is checked: a silently dead one delays a waiter by about this much.
CHECK_S = 2.0


def job_payload(source: str, job_id: str) -> str:
    """What a job's notification carries."""
    return orjson.dumps([source, job_id]).decode()


def notify_job_sql(payload_param: str) -> str:
    """The expression that notifies with the payload bound at `payload_param` (e.g. in a RETURNING list,
    so a statement that changes a job also tells of it, in one round trip)."""
    return f"pg_notify('{JOBS_CHANNEL}', {payload_param})"


async def notify_job(conn: Connection, source: str, job_id: str) -> None:
    """Tell every listening process, at COMMIT, that the job changed."""
    await conn.execute(f"SELECT {notify_job_sql('$1')}", job_payload(source, job_id))


async def notify_outbox(conn: Connection) -> None:
    """Tell every listening process, at COMMIT, that deliveries were queued (identical ones in a
    transaction are sent once)."""
    await conn.execute("SELECT pg_notify($1, '')", OUTBOX_CHANNEL)


class Listener(Loop):
    """A dedicated connection LISTENing on relay's channels; each round connects it if needed and checks
    that it still answers, so a dropped connection is replaced within `CHECK_S` (and a backoff)."""

    name = "listener"

    def __init__(
        self, url: str, changes: Changes, check_s: float = CHECK_S, clock: Callable[[], float] = time.time
    ) -> None:
        super().__init__(check_s, clock)
        self._url = url
        self._changes = changes
        self._conn: asyncpg.Connection | None = None
        self.connects = 0  # how many times it has (re)connected

    @property
    def backend_pid(self) -> int | None:
        """The PostgreSQL backend of the listening connection (as pg_stat_activity shows it), if connected."""
        return None if self._conn is None else self._conn.get_server_pid()

    async def run_once(self, now: float) -> int:
        if self._conn is None or self._conn.is_closed():
            await self._listen()
            return 0
        try:
            async with asyncio.timeout(self.interval_s):
                await self._conn.fetchval("SELECT 1")
        except Exception:
            await self.close()
            raise
        return 0

    async def _listen(self) -> None:
        async with asyncio.timeout(max(self.interval_s, 5.0)):
            conn = await asyncpg.connect(self._url)
        try:
            await conn.add_listener(JOBS_CHANNEL, self._on_job)
            await conn.add_listener(OUTBOX_CHANNEL, self._on_outbox)
        except BaseException:
            conn.terminate()
            raise
        self._conn = conn
        self.connects += 1
        if self.connects > 1:
            log.warning("listening for other instances' changes again (connection %d)", self.connects)
        # Whatever was committed while nobody listened is unknown: everything held reads the database again.
        self._changes.missed()

    def _on_job(self, conn: Any, pid: int, channel: str, payload: str) -> None:
        try:
            source, job_id = orjson.loads(payload)
        except (orjson.JSONDecodeError, ValueError, TypeError):
            log.warning("ignored a malformed %s notification: %.80r", channel, payload)
            return
        self._changes.job_changed(source, job_id)

    def _on_outbox(self, conn: Any, pid: int, channel: str, payload: str) -> None:
        self._changes.deliveries_queued()

    async def close(self) -> None:
        """Hang up the listening connection (the next round, if any, connects again)."""
        conn, self._conn = self._conn, None
        if conn is not None and not conn.is_closed():
            try:
                async with asyncio.timeout(1.0):
                    await conn.close()
            except (TimeoutError, OSError, asyncpg.InterfaceError):
                conn.terminate()
