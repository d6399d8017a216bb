"""The embedded backend: SQLite in WAL mode, writes through one group-commit writer, reads via aiosqlite."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Collection, Iterable, Mapping, Sequence
from functools import partial
from importlib import resources
from typing import Any

import aiosqlite
import orjson

from relay.errors import ServiceUnavailable
from relay.models import (
    AttemptResult,
    Callback,
    CallbackRecord,
    Claim,
    Delivery,
    DeliveryAttempt,
    DeliveryStatus,
    Event,
    IngestOutcome,
    Job,
    Registration,
    Status,
    Subscription,
)
from relay.store import sqlite_deliveries
from relay.store.group_commit import GroupCommitWriter, WriterConnection
from relay.store.sqlite_jobs import JOB_COLUMNS, SELECT_JOB, ingest_callback, job_from_row, register_job
from relay.store.sqlite_sweep import (
    OVERDUE_SQL,
    RECONCILE_DUE_SQL,
    clear_reconcile,
    extend_deadline,
    purge_finished,
    time_out,
)

__all__ = ["SQLiteStore"]

# 2: subscriptions, deliveries, delivery_attempts. 3: callbacks and events keyed by the job's row.
# 4: an event is the history entry that made it (no events table).
SCHEMA_VERSION = 4
# A job's rows of another table, found by its (source, job_id).
_OF_JOB = "job_row = (SELECT id FROM jobs WHERE source = ? AND job_id = ?)"


# Reads in WAL mode never wait for a writer, only for brief moments (another connection's recovery or
# WAL reset); all reads share aiosqlite's one thread, so a longer wait would hold every read behind it.
_READ_WAIT_S = 1.0


def _configure(conn: sqlite3.Connection, synchronous: str) -> None:
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute(f"PRAGMA synchronous = {synchronous.upper()}")
    conn.execute("PRAGMA busy_timeout = 5000")  # at open (migration); the writer then waits on its thread
    conn.execute("PRAGMA foreign_keys = ON")
    # Checkpoint the WAL every ~32 MB instead of every 4 MB: fewer pauses in the writer, same durability.
    conn.execute("PRAGMA wal_autocheckpoint = 8192")


class SQLiteStore:
    """`Store` on one SQLite file. Safe for one relay process (the group-commit writer is the only writer)."""

    def __init__(self, path: str, synchronous: str) -> None:
        self.path = path
        self._synchronous = synchronous
        self.writer = GroupCommitWriter(self._connect_writer)
        self._reader: aiosqlite.Connection | None = None

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
        _migrate(conn)
        return conn

    @property
    def _db(self) -> aiosqlite.Connection:
        if self._reader is None:
            raise RuntimeError("the store is closed")
        return self._reader

    # Jobs: SQL in sqlite_jobs.py.

    async def ingest(
        self,
        source: str,
        callback: Callback,
        now: float,
        timeout_s: float,
        reconcile_after_s: float | None = None,
    ) -> IngestOutcome:
        return await self.writer.run(ingest_callback, source, callback, now, timeout_s, reconcile_after_s)

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
        return None if row is None else job_from_row(row)

    async def list_jobs(
        self, *, source: str | None, status: Status | None, limit: int, before: int | None
    ) -> list[Job]:
        clauses, params = [], []
        for clause, value in (("source = ?", source), ("status = ?", status), ("id < ?", before)):
            if value is not None:
                clauses.append(clause)
                params.append(value)
        where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
        sql = f"SELECT {JOB_COLUMNS} FROM jobs {where} ORDER BY id DESC LIMIT ?"
        rows = await self._db.execute_fetchall(sql, (*params, limit))
        return [job_from_row(row) for row in rows]

    async def list_callbacks(self, source: str, job_id: str) -> list[CallbackRecord]:
        rows = await self._db.execute_fetchall(
            f"SELECT delivery_id, received_at, status, via FROM callbacks WHERE {_OF_JOB} ORDER BY id",
            (source, job_id),
        )
        return [CallbackRecord(r[0], r[1], Status(r[2]), r[3]) for r in rows]

    async def list_events(self, source: str, job_id: str, after: int = 0) -> list[Event]:
        rows = await self._db.execute_fetchall(
            f"SELECT id, event_id, type, received_at, data FROM callbacks"
            f" WHERE {_OF_JOB} AND id > ? AND event_id IS NOT NULL ORDER BY id",
            (source, job_id, after),
        )
        return [Event(row[0], row[1], source, job_id, row[2], row[3], orjson.loads(row[4])) for row in rows]

    async def count_jobs_by_status(self) -> dict[str, int]:
        rows = await self._db.execute_fetchall("SELECT status, count(*) FROM jobs GROUP BY status")
        return {str(status): int(n) for status, n in rows}

    # The sweeper's: SQL in sqlite_sweep.py.

    async def overdue_jobs(self, now: float, limit: int) -> list[Job]:
        return [job_from_row(row) for row in await self._db.execute_fetchall(OVERDUE_SQL, (now, limit))]

    async def reconcile_due(self, now: float, limit: int) -> list[Job]:
        return [job_from_row(row) for row in await self._db.execute_fetchall(RECONCILE_DUE_SQL, (now, limit))]

    async def time_out(self, source: str, job_id: str, now: float) -> IngestOutcome | None:
        return await self.writer.run(time_out, source, job_id, now)

    async def extend_deadline(self, source: str, job_id: str, deadline: float) -> bool:
        return await self.writer.run(extend_deadline, source, job_id, deadline)

    async def clear_reconcile(self, source: str, job_id: str) -> None:
        await self.writer.run(clear_reconcile, source, job_id)

    async def purge_finished(self, before: float, limit: int) -> int:
        return await self.writer.run_bulk(purge_finished, before, limit)

    # Subscriptions and deliveries: SQL in sqlite_deliveries.py.

    async def create_subscription(
        self, url: str, source: str | None, events: Sequence[str] | None, secret: str, now: float
    ) -> Subscription:
        return await self.writer.run(sqlite_deliveries.create_subscription, url, source, events, secret, now)

    async def list_subscriptions(self) -> list[Subscription]:
        rows = await self._db.execute_fetchall(sqlite_deliveries.LIST_SUBSCRIPTIONS_SQL)
        return [sqlite_deliveries.subscription_from_row(row) for row in rows]

    async def get_subscription(self, sub_id: str) -> Subscription | None:
        rows = list(await self._db.execute_fetchall(sqlite_deliveries.GET_SUBSCRIPTION_SQL, (sub_id,)))
        return sqlite_deliveries.subscription_from_row(rows[0]) if rows else None

    async def delete_subscription(self, sub_id: str, now: float) -> bool:
        return await self.writer.run_bulk(sqlite_deliveries.delete_subscription, sub_id, now)

    async def rotate_subscription_secret(
        self, sub_id: str, secret: str, now: float, overlap_s: float
    ) -> Subscription | None:
        return await self.writer.run(sqlite_deliveries.rotate_secret, sub_id, secret, now, overlap_s)

    async def claim_deliveries(
        self,
        now: float,
        *,
        limit: int,
        lease_s: float,
        per_endpoint: int,
        room: Mapping[str, int],
        blocked: Collection[str],
        finished: Sequence[AttemptResult] = (),
    ) -> list[Claim]:
        return await self.writer.run(
            partial(
                sqlite_deliveries.claim,
                finished=list(finished),
                limit=limit,
                lease_s=lease_s,
                per_endpoint=per_endpoint,
                room=dict(room),
                blocked=list(blocked),
            ),
            now,
        )

    async def finish_deliveries(self, results: Sequence[AttemptResult]) -> list[bool]:
        return await self.writer.run(sqlite_deliveries.finish, list(results))

    async def list_deliveries(
        self,
        *,
        status: DeliveryStatus | None = None,
        source: str | None = None,
        job_id: str | None = None,
        subscription_id: str | None = None,
        limit: int = 50,
        before: int | None = None,
    ) -> list[Delivery]:
        sql, params = sqlite_deliveries.list_deliveries_sql(
            status=None if status is None else status.value,
            source=source,
            job_id=job_id,
            subscription_id=subscription_id,
            before=before,
            limit=limit,
        )
        return await self._with_attempts(await self._db.execute_fetchall(sql, params))

    async def get_delivery(self, delivery_id: int) -> Delivery | None:
        rows = await self._db.execute_fetchall(sqlite_deliveries.GET_DELIVERY_SQL, (delivery_id,))
        found = await self._with_attempts(rows)
        return found[0] if found else None

    async def _with_attempts(self, rows: Iterable[Any]) -> list[Delivery]:
        rows = list(rows)
        history: dict[int, list[DeliveryAttempt]] = {row[0]: [] for row in rows}
        if rows:
            sql = sqlite_deliveries.attempts_sql(len(rows))
            for attempt in await self._db.execute_fetchall(sql, list(history)):
                history[attempt[0]].append(sqlite_deliveries.attempt_from_row(attempt))
        return [sqlite_deliveries.delivery_from_row(row, history[row[0]]) for row in rows]

    async def retry_delivery(self, delivery_id: int, now: float) -> Delivery | None:
        return await self.writer.run(sqlite_deliveries.retry, delivery_id, now)

    async def recover_deliveries(self, now: float) -> int:
        return await self.writer.run_bulk(sqlite_deliveries.recover, now)

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

    async def close(self) -> None:
        await self.writer.close()
        if self._reader is not None:
            await self._reader.close()
            self._reader = None


def _migrate(conn: sqlite3.Connection) -> None:
    (version,) = conn.execute("PRAGMA user_version").fetchone()
    if version > SCHEMA_VERSION:
        raise RuntimeError(f"the database is at schema {version}, newer than this relay ({SCHEMA_VERSION})")
    if version == SCHEMA_VERSION:
        return
    # schema.sql creates what is missing (IF NOT EXISTS). Around it, an earlier database moves its tables
    # aside and brings their rows back: before 3, callbacks and events were keyed by (source, job_id); before
    # 4, events had a table of their own.
    schema = resources.files("relay.store").joinpath("schema.sql").read_text()
    before, after = "", ""
    if 0 < version < 3:
        before, after = _BEFORE_V3, _AFTER_V3 + _AFTER_V4
    elif version == 3:
        before, after = _BEFORE_V4, _AFTER_V4
    conn.executescript(f"BEGIN; {before} {schema}; {after} PRAGMA user_version = {SCHEMA_VERSION}; COMMIT;")


_BEFORE_V3 = """
DROP INDEX callbacks_by_job; ALTER TABLE callbacks RENAME TO callbacks_v2;
DROP INDEX events_by_job; ALTER TABLE events RENAME TO events_v2;
"""
_AFTER_V3 = """
INSERT INTO callbacks (id, job_row, delivery_id, received_at, status, via, body)
    SELECT c.id, j.id, c.delivery_id, c.received_at, c.status, c.via, c.body
    FROM callbacks_v2 c JOIN jobs j ON j.source = c.source AND j.job_id = c.job_id ORDER BY c.id;
CREATE TABLE events_v3 AS
    SELECT e.id, e.event_id, j.id AS job_row, e.type, e.created_at, e.data
    FROM events_v2 e JOIN jobs j ON j.source = e.source AND j.job_id = e.job_id;
DROP TABLE callbacks_v2; DROP TABLE events_v2;
"""
_BEFORE_V4 = """
DROP INDEX events_by_job; ALTER TABLE events RENAME TO events_v3;
ALTER TABLE callbacks ADD COLUMN event_id TEXT; ALTER TABLE callbacks ADD COLUMN type TEXT;
ALTER TABLE callbacks ADD COLUMN data BLOB;
"""
# Each event was written with the history entry that caused it, at the same instant: it joins that entry.
# An event with no such entry (none is known) is kept as an entry of its own, so nothing is lost. Queued
# deliveries then point at the entry that holds their event (through negative numbers, so that no row
# collides with another's old number on the way).
# (Correlated subqueries rather than UPDATE ... FROM, which SQLite before 3.33 lacks.)
_AFTER_V4 = """
CREATE INDEX events_v3_by_entry ON events_v3 (job_row, created_at);
UPDATE callbacks SET (event_id, type, data) = (
        SELECT e.event_id, e.type, e.data FROM events_v3 e
        WHERE e.job_row = callbacks.job_row AND e.created_at = callbacks.received_at ORDER BY e.id LIMIT 1)
    WHERE EXISTS (SELECT 1 FROM events_v3 e
        WHERE e.job_row = callbacks.job_row AND e.created_at = callbacks.received_at);
CREATE INDEX callbacks_by_event_migrating ON callbacks (event_id) WHERE event_id IS NOT NULL;
INSERT INTO callbacks (job_row, delivery_id, received_at, status, via, body, event_id, type, data)
    SELECT e.job_row, e.event_id, e.created_at, substr(e.type, 5), 'event', x'7b7d', e.event_id, e.type,
        e.data
    FROM events_v3 e WHERE NOT EXISTS (SELECT 1 FROM callbacks c WHERE c.event_id = e.event_id)
    ORDER BY e.id;
UPDATE deliveries SET event_row = -(SELECT c.id FROM callbacks c WHERE c.event_id = deliveries.event_id)
    WHERE EXISTS (SELECT 1 FROM callbacks c WHERE c.event_id = deliveries.event_id);
UPDATE deliveries SET event_row = -event_row WHERE event_row < 0;
DROP INDEX callbacks_by_event_migrating; DROP TABLE events_v3;
"""
