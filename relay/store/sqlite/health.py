"""The SQLite writer's health: which errors are the database's, not an operation's, and what it last saw."""

from __future__ import annotations

import sqlite3
import time

from relay.errors import ServiceUnavailable

__all__ = ["BUSY", "WriterHealth", "is_busy", "unavailable"]

BUSY = "database_busy"
WRITES_FAILING = "writes_failing"

# Primary result codes (the low byte of an extended one). Busy: another connection holds the lock.
_BUSY_CODES = frozenset({5, 6})  # SQLITE_BUSY, SQLITE_LOCKED
# The database cannot take writes: NOMEM, READONLY, IOERR, CORRUPT, FULL, CANTOPEN, PROTOCOL, NOTADB.
_STORAGE_CODES = _BUSY_CODES | {7, 8, 10, 11, 13, 14, 15, 26}


def _primary_code(exc: BaseException) -> int | None:
    # Errors raised by the sqlite3 module itself (a closed connection) carry no SQLite code.
    code = getattr(exc, "sqlite_errorcode", None) if isinstance(exc, sqlite3.Error) else None
    return None if code is None else int(code) & 0xFF


def is_busy(exc: BaseException) -> bool:
    """Whether `exc` says another connection holds the database's lock."""
    return _primary_code(exc) in _BUSY_CODES


def unavailable(exc: BaseException) -> ServiceUnavailable | None:
    """The 503 that `exc` stands for when the database, not the operation, failed; None otherwise."""
    code = _primary_code(exc)
    if code is None or code not in _STORAGE_CODES:
        return None
    if code in _BUSY_CODES:
        error = ServiceUnavailable(f"the database is locked by another connection ({exc})", BUSY)
    else:
        error = ServiceUnavailable(f"writes to the database are failing: {exc}", WRITES_FAILING)
    error.__cause__ = exc
    return error


class WriterHealth:
    """What the writer last learnt about the database, read by /healthz without touching the database.

    The writer thread sets `waiting_since` while it waits for the lock; the event loop reads it. Both are
    single attribute writes, so no lock is needed.
    """

    def __init__(self) -> None:
        # time.monotonic() at which a batch began waiting for the lock, on the writer thread
        self.waiting_since: float | None = None
        self.failure: ServiceUnavailable | None = None  # why the last batch failed; None once one succeeds

    def check_waiting(self) -> None:
        """Raise 503 `database_busy` while a batch waits for the lock."""
        since = self.waiting_since
        if since is not None:
            raise ServiceUnavailable(
                f"writes have waited {time.monotonic() - since:.1f} s for the database's write lock,"
                " which another connection holds",
                BUSY,
            )

    def check_failure(self) -> None:
        """Raise the 503 of the last batch's failure, if it failed."""
        failure = self.failure
        if failure is not None:
            raise ServiceUnavailable(f"the last write failed: {failure.message}", failure.code)

    def record(self, failure: ServiceUnavailable | None, took_lock: bool, wrote: bool) -> None:
        """Keep a batch's outcome: its failure, or whether it disproves the last one.

        Taking the lock disproves a busy failure; only rows written and committed disprove a failing disk.
        """
        if failure is not None:
            self.failure = failure
        elif self.failure is not None and (wrote or (took_lock and self.failure.code == BUSY)):
            self.failure = None

    def probe(self, conn: sqlite3.Connection) -> None:
        """Test the idle writer's `conn` and forget the last failure if it passes; raise its 503 if not.

        An empty write transaction fails at once while another connection holds the lock (the writer's
        busy_timeout is 0); after a failed write, a `CREATE TABLE` must also allocate a page, which fails
        while there is no room. Both are rolled back: nothing reaches the disk.
        """
        failure = self.failure
        try:
            conn.execute("BEGIN IMMEDIATE")
            if failure is not None and failure.code != BUSY:
                conn.execute("CREATE TABLE _relay_probe (x)")
        except sqlite3.Error as exc:
            raise unavailable(exc) or ServiceUnavailable(
                f"the database does not take writes: {exc}", "database_down"
            ) from exc
        finally:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
        self.failure = None
