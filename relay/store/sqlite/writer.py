"""Group commit for SQLite: queued operations share transactions; the commit waits on a thread."""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from relay.errors import ServiceUnavailable
from relay.store.sqlite.health import BUSY, WriterHealth, is_busy, unavailable

__all__ = ["GroupCommitWriter", "WriterConnection", "memo_of"]

log = logging.getLogger(__name__)
T = TypeVar("T")
Operation = Callable[..., Any]
_Queued = tuple[Operation, tuple[Any, ...], "asyncio.Future[Any]", bool]  # ..., whether it is bulk work


def _CLOSE(conn: sqlite3.Connection) -> None:
    """Marker operation: the writer stops after the batch that holds it."""


class WriterConnection(sqlite3.Connection):
    """The writer's connection, with a memo that lasts one transaction: the operations of a batch share reads
    of what rarely changes (the subscriptions, read for every event), and the writer empties it whenever a
    transaction begins or an operation's work is rolled back. An operation that changes what it holds
    drops that entry itself."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.memo: dict[str, Any] = {}


def memo_of(conn: sqlite3.Connection) -> dict[str, Any]:
    """The transaction's memo; an empty one that keeps nothing for any other connection."""
    return conn.memo if isinstance(conn, WriterConnection) else {}


# Bounds one transaction, so a burst cannot hold a request's answer behind thousands of others.
MAX_BATCH = 256
# How long a batch waits for the lock another connection holds before its callers get 503 (the old
# busy_timeout).
LOCK_WAIT_S = 5.0


class GroupCommitWriter:
    """Serialises writes: each batch of queued operations is one transaction and one fsync.

    A batch's statements run on the event loop, where their callers are: they are short (index lookups and
    appends in the page cache), and on a thread of their own they cost more in GIL hand-offs between the two
    threads than they take themselves (a quarter more CPU per callback, measured). The COMMIT, which
    writes the WAL and waits for fsync with the GIL released, runs on the writer thread, so the loop serves
    requests meanwhile and the next batch gathers. Bulk operations (`run_bulk`: retention's deletes and
    other scans of many rows) take their whole batch to the thread, so they never stall the loop.
    A failing operation fails only its caller; a failed commit fails the whole batch, storing nothing.

    Another connection holding the lock never stalls the loop: there the connection does not wait
    (busy_timeout 0), and a batch that finds the lock taken goes to the thread, which waits for it up to
    `lock_wait_s`. Failures of the database itself (lock, full disk, I/O) reach callers as 503s and are kept
    in `health` for /healthz, with `probe()`.
    """

    def __init__(self, connect: Callable[[], WriterConnection], lock_wait_s: float = LOCK_WAIT_S) -> None:
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="relay-sqlite-writer")
        self._connect = connect
        self._conn: WriterConnection | None = None
        # A plain deque and one wake-up future rather than asyncio.Queue: a callback costs a put and a get,
        # and the Queue's bookkeeping for many getters and a size bound is wasted on one consumer.
        self._queue: deque[_Queued] = deque()
        self._wakeup: asyncio.Future[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task[None] | None = None
        self.batches = 0  # read by tests and benchmarks to see that commits are shared
        self.lock_wait_s = lock_wait_s
        self.health = WriterHealth()
        self._in_flight = False  # a batch holds the connection (its transaction stays open across an await)

    async def start(self) -> None:
        self._loop = loop = asyncio.get_running_loop()
        self._conn = await loop.run_in_executor(self._executor, self._open)
        self._task = asyncio.create_task(self._run(), name="relay-sqlite-writer")

    def _open(self) -> WriterConnection:
        conn = self._connect()  # opening (and migrating) may wait for the lock: this runs on the thread
        # On the loop, taking the lock must succeed or fail at once; only the thread waits (`_begin`).
        conn.execute("PRAGMA busy_timeout = 0")
        return conn

    # `run` and `run_bulk` hand back the future itself rather than being coroutines awaiting it: every
    # callback awaits one, and each coroutine layer is paid again when the commit resumes the caller.

    def run(self, operation: Callable[..., T], *args: Any) -> asyncio.Future[T]:
        """Run `operation(conn, *args)` in the next transaction; the future is done once that transaction
        committed (raises RuntimeError at once when the writer is closed)."""
        return self._enqueue(operation, args, bulk=False)

    def run_bulk(self, operation: Callable[..., T], *args: Any) -> asyncio.Future[T]:
        """As `run`, for an operation that may touch many rows: its batch runs on the writer thread."""
        return self._enqueue(operation, args, bulk=True)

    def _enqueue(self, operation: Callable[..., T], args: tuple[Any, ...], bulk: bool) -> asyncio.Future[T]:
        # The loop from start(), not asyncio.get_running_loop(): on Python 3.11 that makes a getpid() system
        # call each time, and this runs for every callback.
        loop = self._loop
        if self._task is None or loop is None or self._task.done():
            raise RuntimeError("the store is closed")
        future: asyncio.Future[T] = loop.create_future()
        self._push((operation, args, future, bulk))
        return future

    def _push(self, queued: _Queued) -> None:
        self._queue.append(queued)
        if self._wakeup is not None and not self._wakeup.done():
            self._wakeup.set_result(None)

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        closing = False
        queue = self._queue
        while not closing:
            while not queue:
                self._wakeup = loop.create_future()
                await self._wakeup
            batch = [queue.popleft() for _ in range(min(len(queue), MAX_BATCH))]
            if batch[-1][0] is _CLOSE:  # close() queues this last, after every caller's operation
                batch.pop()
                closing = True
            conn = self._conn
            assert conn is not None
            changes = conn.total_changes
            self._in_flight = True
            try:
                outcomes = await self._commit_batch(batch, loop)
                committed = took_lock = True
            except Exception as exc:  # the batch failed as a whole: none of its operations is stored
                committed, took_lock = False, not is_busy(exc)
                if unavailable(exc) is None:  # the database's own failures are logged once, below
                    log.exception("sqlite batch of %d failed to commit", len(batch))
                outcomes = [(False, exc)] * len(batch)
            self._in_flight = False
            self.batches += 1
            failure = self._settle(batch, outcomes)
            if failure is not None or self.health.failure is not None:
                if failure is not None and self.health.failure is None:
                    log.error("sqlite writes are failing: %s", failure.message)
                self.health.record(failure, took_lock, committed and conn.total_changes > changes)

    async def _commit_batch(
        self, batch: list[_Queued], loop: asyncio.AbstractEventLoop
    ) -> list[tuple[bool, Any]]:
        """Run and commit one batch, its statements on the loop when they are short and the lock is free."""
        # Once a batch gave up waiting for the lock, later ones try it once and fail fast until it is free.
        failure = self.health.failure
        wait_s = 0.0 if failure is not None and failure.code == BUSY else self.lock_wait_s
        if not any(bulk for *_, bulk in batch):
            try:
                outcomes = self._apply(batch, False, 0.0)
            except sqlite3.Error as exc:
                if not (wait_s and is_busy(exc)):
                    raise
                # Another connection holds the lock: the thread waits for it while the loop serves others.
            else:
                await loop.run_in_executor(self._executor, self._commit)
                return outcomes
        return await loop.run_in_executor(self._executor, self._apply, batch, True, wait_s)

    def _settle(self, batch: list[_Queued], outcomes: list[tuple[bool, Any]]) -> ServiceUnavailable | None:
        """Hand each caller its outcome; answer the 503 of the database's own failure, if there was one."""
        failure = None
        for (_, _, future, _), (ok, value) in zip(batch, outcomes, strict=True):
            if not ok and (error := unavailable(value)) is not None:
                failure = value = error
            if future.done():  # the caller went away; its write still happened
                continue
            if ok:
                future.set_result(value)
            else:
                future.set_exception(value)
        return failure

    def _apply(self, batch: list[_Queued], commit: bool, wait_s: float) -> list[tuple[bool, Any]]:
        # Operations rarely fail, so a batch first runs without a savepoint around each one (two statements
        # per operation saved). When one does fail, the whole transaction is rolled back and the batch runs
        # again with savepoints, so the failure stays its own caller's, as it would have from the start.
        outcomes = self._transaction(batch, False, wait_s)
        if outcomes is None:
            outcomes = self._transaction(batch, True, wait_s)
            assert outcomes is not None
        if commit:
            self._commit()
        return outcomes

    def _begin(self, conn: WriterConnection, wait_s: float) -> None:
        try:
            conn.execute("BEGIN IMMEDIATE")
            return
        except sqlite3.Error as exc:
            if not (wait_s and is_busy(exc)):
                raise
        # Only on the writer thread (a wait is never asked for on the loop): wait for the lock, bounded.
        self.health.waiting_since = time.monotonic()
        conn.execute(f"PRAGMA busy_timeout = {int(wait_s * 1000)}")
        try:
            conn.execute("BEGIN IMMEDIATE")
        finally:
            conn.execute("PRAGMA busy_timeout = 0")
            self.health.waiting_since = None

    def _transaction(
        self, batch: list[_Queued], isolated: bool, wait_s: float
    ) -> list[tuple[bool, Any]] | None:
        """Run the batch in an open transaction; None when an operation failed and `isolated` was off."""
        conn = self._conn
        assert conn is not None
        outcomes: list[tuple[bool, Any]] = []
        self._begin(conn, wait_s)
        conn.memo.clear()
        try:
            for operation, args, _, _ in batch:
                if isolated:
                    conn.execute("SAVEPOINT op")
                try:
                    outcomes.append((True, operation(conn, *args)))
                except Exception as exc:
                    if (
                        not conn.in_transaction
                    ):  # SQLite rolled it all back (full disk, I/O): the batch failed
                        raise
                    if not isolated:
                        conn.execute("ROLLBACK")
                        return [(False, exc)] if len(batch) == 1 else None  # alone, it already failed alone
                    conn.execute("ROLLBACK TO op")
                    conn.memo.clear()
                    outcomes.append((False, exc))
                if isolated:
                    conn.execute("RELEASE op")
        except BaseException:
            self._rollback()
            raise
        return outcomes

    def _commit(self) -> None:
        conn = self._conn
        assert conn is not None
        if not conn.in_transaction:  # a batch of one whose operation failed was rolled back already
            return
        try:
            conn.execute("COMMIT")
        except BaseException:
            self._rollback()  # a failed COMMIT (a deferred constraint) leaves the transaction open
            raise

    def _rollback(self) -> None:
        conn = self._conn
        if conn is not None and conn.in_transaction:
            conn.execute("ROLLBACK")

    def probe(self) -> None:
        """Raise ServiceUnavailable unless writes go through now; never waits for the lock."""
        conn = self._conn
        if conn is None or self._task is None or self._task.done():
            raise ServiceUnavailable("the database's writer is closed", "database_down")
        self.health.check_waiting()
        if self._in_flight:  # the connection is the running batch's: what the last one met answers
            self.health.check_failure()
        else:
            self.health.probe(conn)

    async def close(self) -> None:
        """Let queued operations commit, then close the connection and the thread."""
        if self._task is not None and not self._task.done():
            self._push((_CLOSE, (), asyncio.get_running_loop().create_future(), False))
            await self._task
        loop = asyncio.get_running_loop()
        if self._conn is not None:
            await loop.run_in_executor(self._executor, self._conn.close)
            self._conn = None
        self._executor.shutdown(wait=True)
