"""The server backend: PostgreSQL through an asyncpg pool, one transaction per operation, committed before
it returns. The outbox half (`OutboxMethods`) is in outbox.py."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

import asyncpg

from relay.errors import ServiceUnavailable
from relay.file_models import ArchivedFile
from relay.loops import Loop
from relay.models import Callback, CallbackRecord, Event, IngestOutcome, Job, Registration, Status
from relay.store.backlog import Backlog
from relay.store.changes import Changes
from relay.store.job_counts import job_counts, job_counts_sql
from relay.store.leases import RELEASE_LEASE_SQL, TAKE_LEASE_SQL, HeldLeases
from relay.store.numbered import numbered
from relay.store.postgres import jobs, timeouts
from relay.store.postgres.backlog import read_backlog
from relay.store.postgres.files import FileMethods, load_files
from relay.store.postgres.migrations import migrate
from relay.store.postgres.notify import Listener
from relay.store.postgres.outbox import OutboxMethods
from relay.store.rows import (
    COUNT_JOBS_BY_STATUS_SQL,
    JOB_COLUMNS,
    LIST_CALLBACKS_SQL,
    LIST_EVENTS_SQL,
    OPEN,
    SELECT_JOB,
    callback_records,
    counts_by_status,
    job_from_row,
    list_jobs_sql,
    listed_events,
)

__all__ = ["PostgresStore"]

T = TypeVar("T")

_SELECT_JOB = numbered(SELECT_JOB)
_LIST_CALLBACKS_SQL = numbered(LIST_CALLBACKS_SQL)
_LIST_EVENTS_SQL = numbered(LIST_EVENTS_SQL)
_OVERDUE_SQL = f"SELECT {JOB_COLUMNS} FROM jobs WHERE {OPEN} AND deadline <= $1 ORDER BY deadline LIMIT $2"
_RECONCILE_DUE_SQL = (
    f"SELECT {JOB_COLUMNS} FROM jobs WHERE reconcile_at IS NOT NULL AND {OPEN} AND reconcile_at <= $1"
    " ORDER BY reconcile_at LIMIT $2"
)
_TAKE_LEASE_SQL = numbered(TAKE_LEASE_SQL)
_RELEASE_LEASE_SQL = numbered(RELEASE_LEASE_SQL)
# How long a health check waits for a connection and an answer before it calls the database down.
_PING_S = 2.0


async def _keep_session(conn: asyncpg.Connection) -> None:
    """A pooled connection goes back as it is: relay leaves no session state on one (no SET, LISTEN,
    session lock or cursor outlives its transaction), so asyncpg's reset query would be a wasted round trip
    per use."""


_JOB_COUNTS_SQL = job_counts_sql(indexed=False)


class PostgresStore(OutboxMethods, FileMethods):
    """`Store` on one PostgreSQL database; any number of relay processes may share it."""

    shared = True

    def __init__(self, pool: asyncpg.Pool, url: str, listen: bool = True) -> None:
        self._pool = pool
        self._url = url
        self._listen = listen
        self._listener: Listener | None = None
        self._leases = HeldLeases()

    @classmethod
    async def open(
        cls, url: str, *, pool_min: int = 1, pool_max: int = 10, listen: bool = True
    ) -> PostgresStore:
        """Connect a pool to the database at `url` and apply its pending migrations; with `listen`, the
        change feed hears other processes' commits (off behind PgBouncer in transaction mode)."""
        pool = await asyncpg.create_pool(
            url, min_size=min(pool_min, pool_max), max_size=pool_max, reset=_keep_session
        )
        try:
            async with pool.acquire() as conn:
                await migrate(conn)
        except BaseException:
            await pool.close()
            raise
        return cls(pool, url, listen)

    def change_feed(self, changes: Changes) -> Loop | None:
        if not self._listen:
            return None
        self._listener = Listener(self._url, changes)
        return self._listener

    async def _in_transaction(self, work: Callable[..., Awaitable[T]], *args: Any) -> T:
        """Run `work(conn, *args)` in a transaction of its own; it returns once committed."""
        async with self._pool.acquire() as conn, conn.transaction():
            return await work(conn, *args)

    # Jobs: SQL in jobs.py.

    async def ingest(
        self,
        source: str,
        callback: Callback,
        now: float,
        timeout_s: float,
        reconcile_after_s: float | None = None,
        files: Sequence[ArchivedFile] = (),
    ) -> IngestOutcome:
        return await self._in_transaction(
            jobs.ingest_callback, source, callback, now, timeout_s, reconcile_after_s, tuple(files)
        )

    async def register(
        self,
        registration: Registration,
        now: float,
        timeout_s: float,
        reconcile_after_s: float | None = None,
    ) -> tuple[Job, bool]:
        return await self._in_transaction(jobs.register_job, registration, now, timeout_s, reconcile_after_s)

    async def get_job(self, source: str, job_id: str) -> Job | None:
        row = await self._pool.fetchrow(_SELECT_JOB, source, job_id)
        return None if row is None else (await load_files(self._pool, [job_from_row(row)]))[0]

    async def list_jobs(
        self, *, source: str | None, status: Status | None, limit: int, before: int | None
    ) -> list[Job]:
        sql, params = list_jobs_sql(source=source, status=status, before=before, limit=limit)
        return await load_files(
            self._pool, [job_from_row(row) for row in await self._pool.fetch(numbered(sql), *params)]
        )

    async def list_callbacks(self, source: str, job_id: str) -> list[CallbackRecord]:
        return callback_records(await self._pool.fetch(_LIST_CALLBACKS_SQL, source, job_id))

    async def list_events(self, source: str, job_id: str, after: int = 0) -> list[Event]:
        return listed_events(source, job_id, await self._pool.fetch(_LIST_EVENTS_SQL, source, job_id, after))

    async def count_jobs_by_status(self) -> dict[str, int]:
        return counts_by_status(await self._pool.fetch(COUNT_JOBS_BY_STATUS_SQL))

    async def count_jobs_capped(self) -> dict[str, int]:
        return job_counts(await self._pool.fetchrow(_JOB_COUNTS_SQL))

    # The sweeper's: reads of the partial indexes, and writes in jobs.py.

    async def overdue_jobs(self, now: float, limit: int) -> list[Job]:
        return [job_from_row(row) for row in await self._pool.fetch(_OVERDUE_SQL, now, limit)]

    async def reconcile_due(self, now: float, limit: int) -> list[Job]:
        return [job_from_row(row) for row in await self._pool.fetch(_RECONCILE_DUE_SQL, now, limit)]

    async def time_out(self, source: str, job_id: str, now: float) -> IngestOutcome | None:
        return await self._in_transaction(timeouts.time_out, source, job_id, now)

    async def time_out_many(self, overdue: Sequence[Job], now: float) -> list[IngestOutcome | None]:
        return await self._in_transaction(timeouts.time_out_many, list(overdue), now)

    async def extend_deadline(self, source: str, job_id: str, deadline: float) -> bool:
        status: str = await self._pool.execute(
            f"UPDATE jobs SET deadline = $1 WHERE source = $2 AND job_id = $3 AND {OPEN}",
            deadline,
            source,
            job_id,
        )
        return status != "UPDATE 0"

    async def clear_reconcile(self, source: str, job_id: str) -> None:
        await self._pool.execute(
            "UPDATE jobs SET reconcile_at = NULL WHERE source = $1 AND job_id = $2", source, job_id
        )

    async def purge_finished(self, before: float, limit: int) -> int:
        return await self._in_transaction(jobs.purge_finished, before, limit)

    # Leases: SQL in ../leases.py.

    async def take_lease(self, name: str, holder: str, now: float, ttl_s: float) -> bool:
        status: str = await self._pool.execute(_TAKE_LEASE_SQL, name, holder, now + ttl_s, now)
        return self._leases.note(name, holder, status != "INSERT 0 0")

    async def release_lease(self, name: str, holder: str) -> None:
        await self._pool.execute(_RELEASE_LEASE_SQL, name, holder)
        self._leases.forget(name, holder)

    async def backlog(self, now: float) -> Backlog:
        return await read_backlog(self._pool, now)

    async def ping(self) -> None:
        try:
            async with asyncio.timeout(_PING_S), self._pool.acquire() as conn:
                # A standby (or a primary demoted under us) answers reads but takes no writes.
                read_only = await conn.fetchval(
                    "SELECT pg_is_in_recovery() OR current_setting('transaction_read_only') = 'on'"
                )
        except (TimeoutError, OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            raise ServiceUnavailable(
                f"the database did not answer: {type(exc).__name__}", "database_down"
            ) from None
        if read_only:
            raise ServiceUnavailable(
                "the database takes no writes (read-only or in recovery)", "writes_failing"
            )

    async def close(self) -> None:
        await self._leases.release_all(self.release_lease)
        if self._listener is not None:
            await self._listener.close()
        await self._pool.close()
