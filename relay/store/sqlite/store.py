"""The embedded backend: SQLite in WAL mode, writes through one group-commit writer, reads via aiosqlite.
The outbox half (`OutboxMethods`) is in outbox_methods.py, the archive half (`FileMethods`) in files.py."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Sequence

import aiosqlite
import orjson

from relay.errors import ServiceUnavailable
from relay.file_models import ArchivedFile
from relay.loops import Loop
from relay.models import Callback, CallbackRecord, Event, IngestOutcome, Job, Registration, Status
from relay.store.backlog import Backlog
from relay.store.changes import Changes
from relay.store.file_rows import attach_files, files_of_jobs_sql, final_rows
from relay.store.job_counts import job_counts, job_counts_sql
from relay.store.leases import HeldLeases
from relay.store.rows import (
    COUNT_JOBS_BY_STATUS_SQL,
    LIST_CALLBACKS_SQL,
    LIST_EVENTS_SQL,
    SELECT_JOB,
    callback_records,
    counts_by_status,
    job_from_row,
    list_jobs_sql,
    listed_events,
)
from relay.store.sqlite import leases
from relay.store.sqlite.backlog import read_backlog
from relay.store.sqlite.files import FileMethods
from relay.store.sqlite.jobs import ingest_callback, register_job
from relay.store.sqlite.migrations import migrate
from relay.store.sqlite.outbox_methods import OutboxMethods
from relay.store.sqlite.sweeps import (
    OVERDUE_SQL,
    RECONCILE_DUE_SQL,
    clear_reconcile,
    extend_deadline,
    purge_finished,
    time_out,
    time_out_many,
)
from relay.store.sqlite.writer import GroupCommitWriter, WriterConnection

__all__ = ["SQLiteStore", "migrate_file"]

# Reads in WAL mode never wait for a writer, only for brief moments (another connection's recovery or
# WAL reset); all reads share aiosqlite's one thread, so a longer wait would hold every read behind it.
_READ_WAIT_S = 1.0


def _configure(conn: sqlite3.Connection, synchronous: str) -> None:
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute(f"PRAGMA synchronous = {synchronous.upper()}")
    conn.execute("PRAGMA busy_timeout = 5000")  # at open (migration); the writer then waits on its thread
    conn.execute("PRAGMA foreign_keys = ON")
    # Checkpoint the WAL every ~4 MB (SQLite's default): a larger one stalls the commits behind it long enough
    # to double ingest's p99, for no measurable throughput (docs/benchmarks.md).
    conn.execute("PRAGMA wal_autocheckpoint = 1000")


def migrate_file(path: str, synchronous: str = "full") -> list[int]:
    """Apply the pending migrations to the database at `path` (created if missing); answer their numbers."""
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        _configure(conn, synchronous)
        return migrate(conn)
    finally:
        conn.close()


# Pinned to jobs_by_status (as backlog.py pins its reads): each count a covering range of it.
_JOB_COUNTS_SQL = job_counts_sql(indexed=True)
_FILES_OF_JOBS_SQL = files_of_jobs_sql("IN (SELECT value FROM json_each(?))")


class SQLiteStore(OutboxMethods, FileMethods):
    """`Store` on one SQLite file. Safe for one relay process (the group-commit writer is the only writer)."""

    shared = False

    def __init__(self, path: str, synchronous: str) -> None:
        self.path = path
        self._synchronous = synchronous
        self.writer = GroupCommitWriter(self._connect_writer)
        self._reader: aiosqlite.Connection | None = None
        self._leases = HeldLeases()

    @classmethod
    async def open(cls, path: str, *, synchronous: str = "full") -> SQLiteStore:
        store = cls(path, synchronous)
        await store.writer.start()
        # The busy wait runs on aiosqlite's thread, never on the loop.
        store._reader = await aiosqlite.connect(path, timeout=_READ_WAIT_S)
        return store

    def _connect_writer(self) -> WriterConnection:
        conn = sqlite3.connect(
            self.path, isolation_level=None, check_same_thread=False, factory=WriterConnection
        )
        _configure(conn, self._synchronous)
        migrate(conn)
        return conn

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
        return await self.writer.run(
            ingest_callback, source, callback, now, timeout_s, reconcile_after_s, tuple(files)
        )

    async def register(
        self,
        registration: Registration,
        now: float,
        timeout_s: float,
        reconcile_after_s: float | None = None,
    ) -> tuple[Job, bool]:
        return await self.writer.run(register_job, registration, now, timeout_s, reconcile_after_s)

    async def get_job(self, source: str, job_id: str) -> Job | None:
        # Every read is one call that runs its statement to the end on the reader's thread. A cursor left
        # open by a caller cancelled between execute and close (a client hanging up on a stream) would hold
        # the reader's snapshot, and every later read would miss what was committed since.
        row = next(iter(await self._db.execute_fetchall(SELECT_JOB, (source, job_id))), None)
        return None if row is None else (await self._load_files([job_from_row(row)]))[0]

    async def _load_files(self, jobs: list[Job]) -> list[Job]:
        """The jobs with their archived files, in one read (none when no job is final)."""
        rows = final_rows(jobs)
        if not rows:
            return jobs
        return attach_files(jobs, await self._db.execute_fetchall(_FILES_OF_JOBS_SQL, (orjson.dumps(rows),)))

    async def list_jobs(
        self, *, source: str | None, status: Status | None, limit: int, before: int | None
    ) -> list[Job]:
        sql, params = list_jobs_sql(source=source, status=status, before=before, limit=limit)
        return await self._load_files(
            [job_from_row(row) for row in await self._db.execute_fetchall(sql, params)]
        )

    async def list_callbacks(self, source: str, job_id: str) -> list[CallbackRecord]:
        return callback_records(await self._db.execute_fetchall(LIST_CALLBACKS_SQL, (source, job_id)))

    async def list_events(self, source: str, job_id: str, after: int = 0) -> list[Event]:
        rows = await self._db.execute_fetchall(LIST_EVENTS_SQL, (source, job_id, after))
        return listed_events(source, job_id, rows)

    async def count_jobs_by_status(self) -> dict[str, int]:
        return counts_by_status(await self._db.execute_fetchall(COUNT_JOBS_BY_STATUS_SQL))

    async def count_jobs_capped(self) -> dict[str, int]:
        return job_counts(next(iter(await self._db.execute_fetchall(_JOB_COUNTS_SQL))))

    # The sweeper's: SQL in jobs.py.

    async def overdue_jobs(self, now: float, limit: int) -> list[Job]:
        return [job_from_row(row) for row in await self._db.execute_fetchall(OVERDUE_SQL, (now, limit))]

    async def reconcile_due(self, now: float, limit: int) -> list[Job]:
        return [job_from_row(row) for row in await self._db.execute_fetchall(RECONCILE_DUE_SQL, (now, limit))]

    async def time_out(self, source: str, job_id: str, now: float) -> IngestOutcome | None:
        return await self.writer.run(time_out, source, job_id, now)

    async def time_out_many(self, jobs: Sequence[Job], now: float) -> list[IngestOutcome | None]:
        return await self.writer.run_bulk(time_out_many, list(jobs), now)

    async def extend_deadline(self, source: str, job_id: str, deadline: float) -> bool:
        return await self.writer.run(extend_deadline, source, job_id, deadline)

    async def clear_reconcile(self, source: str, job_id: str) -> None:
        await self.writer.run(clear_reconcile, source, job_id)

    async def purge_finished(self, before: float, limit: int) -> int:
        return await self.writer.run_bulk(purge_finished, before, limit)

    # Leases: SQL in ../leases.py.

    async def take_lease(self, name: str, holder: str, now: float, ttl_s: float) -> bool:
        taken = await self.writer.run(leases.take_lease, name, holder, now, ttl_s)
        return self._leases.note(name, holder, taken)

    async def release_lease(self, name: str, holder: str) -> None:
        await self.writer.run(leases.release_lease, name, holder)
        self._leases.forget(name, holder)

    async def backlog(self, now: float) -> Backlog:
        return await read_backlog(self._db, now)

    async def ping(self) -> None:
        self.writer.probe()
        try:
            # Reads the file's header, so a database that cannot be read fails here, within a bound.
            async with asyncio.timeout(2 * _READ_WAIT_S):
                await self._db.execute_fetchall("PRAGMA user_version")
        except TimeoutError:
            raise ServiceUnavailable(
                f"the database did not answer a read within {2 * _READ_WAIT_S:g} s", "database_down"
            ) from None

    def change_feed(self, changes: Changes) -> Loop | None:
        return None  # one process: the in-process hub hears every change

    async def close(self) -> None:
        await self._leases.release_all(self.release_lease)
        await self.writer.close()
        if self._reader is not None:
            await self._reader.close()
            self._reader = None
