"""The SQLite writer against another connection's lock and a full disk: waits off the loop, recovers."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator
from contextlib import closing
from pathlib import Path

import pytest

from relay.errors import ServiceUnavailable
from relay.store.sqlite import SQLiteStore
from relay.store.sqlite.health import unavailable
from tests.conftest import wait_for


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SQLiteStore]:
    opened = await SQLiteStore.open(str(tmp_path / "store.db"))
    await opened.writer.run(lambda conn: conn.execute("CREATE TABLE scratch (b BLOB)"))
    try:
        yield opened
    finally:
        await opened.close()


def other_connection(store: SQLiteStore) -> sqlite3.Connection:
    return sqlite3.connect(store.path, isolation_level=None, check_same_thread=False)


def put_blob(conn: sqlite3.Connection, size: int) -> None:
    conn.execute("INSERT INTO scratch (b) VALUES (zeroblob(?))", (size,))


async def code_of_ping(store: SQLiteStore) -> str | None:
    try:
        await store.ping()
    except ServiceUnavailable as exc:
        return exc.code
    return None


def cap_at_current_size(conn: sqlite3.Connection) -> None:
    """A full disk, as SQLite meets one: the file may not grow past the pages it has (SQLITE_FULL)."""
    (pages,) = conn.execute("PRAGMA page_count").fetchone()
    conn.execute(f"PRAGMA max_page_count = {pages}")


async def test_bulk_work_waits_for_the_lock_on_the_thread_and_commits_once_free(store: SQLiteStore) -> None:
    """A bulk batch finding the lock taken waits on the writer thread; ping says database_busy meanwhile."""
    other = other_connection(store)
    other.execute("BEGIN EXCLUSIVE")
    pending = asyncio.ensure_future(store.writer.run_bulk(put_blob, 10))
    await wait_for(lambda: store.writer.health.waiting_since is not None)  # the loop is free to check
    assert await code_of_ping(store) == "database_busy"
    other.execute("ROLLBACK")
    await pending
    assert await code_of_ping(store) is None
    other.close()


async def test_a_full_disk_is_reported_until_room_is_proven(store: SQLiteStore) -> None:
    """After a write failed for want of room, a batch that writes nothing does not clear it; ping's probe,
    which allocates a page, says writes_failing until there is room, then the writer is healthy again."""

    await store.writer.run(cap_at_current_size)
    results = await asyncio.gather(
        store.writer.run(put_blob, 1), store.writer.run(put_blob, 50_000), return_exceptions=True
    )
    # SQLite rolls the whole transaction back on SQLITE_FULL, so the batch fails as one.
    assert all(isinstance(r, ServiceUnavailable) and r.code == "writes_failing" for r in results), results
    await store.writer.run(lambda conn: None)
    assert store.writer.health.failure is not None
    assert await code_of_ping(store) == "writes_failing"
    await store.writer.run(lambda conn: conn.execute("PRAGMA max_page_count = 1073741823"))
    assert await code_of_ping(store) is None
    await store.writer.run(put_blob, 50_000)


def test_only_the_databases_own_failures_are_503s(tmp_path: Path) -> None:
    """Lock and storage errors map to 503s with their codes; an operation's own error stays its own."""
    with closing(sqlite3.connect(":memory:")) as conn, pytest.raises(sqlite3.IntegrityError) as duplicate:
        conn.execute("CREATE TABLE t (x PRIMARY KEY)")
        conn.execute("INSERT INTO t VALUES (1)")
        conn.execute("INSERT INTO t VALUES (1)")
    assert unavailable(duplicate.value) is None
    assert unavailable(ValueError("not sqlite")) is None
    path = tmp_path / "locked.db"
    with (
        closing(sqlite3.connect(path, isolation_level=None)) as holder,
        closing(sqlite3.connect(path, timeout=0)) as writer,
    ):
        holder.execute("CREATE TABLE t (x)")
        holder.execute("BEGIN EXCLUSIVE")
        with pytest.raises(sqlite3.OperationalError) as locked:
            writer.execute("INSERT INTO t VALUES (1)")
        holder.execute("ROLLBACK")
    busy = locked.value
    assert busy.sqlite_errorcode == sqlite3.SQLITE_BUSY
    mapped = unavailable(busy)
    assert mapped is not None and mapped.code == "database_busy" and mapped.__cause__ is busy
