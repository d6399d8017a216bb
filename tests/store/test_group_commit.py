"""The SQLite group-commit writer: shared transactions, isolated failures, clean shutdown."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from relay.store.sqlite.writer import GroupCommitWriter, WriterConnection, memo_of


@pytest.fixture
async def writer(tmp_path: Path) -> AsyncIterator[GroupCommitWriter]:
    path = tmp_path / "w.db"

    def connect() -> WriterConnection:
        conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, factory=WriterConnection)
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA foreign_keys = ON")
        conn.execute("CREATE TABLE IF NOT EXISTS items (name TEXT PRIMARY KEY)")
        conn.execute("CREATE TABLE IF NOT EXISTS parents (id INTEGER PRIMARY KEY)")
        conn.execute(
            "CREATE TABLE IF NOT EXISTS children (parent INTEGER"
            " REFERENCES parents (id) DEFERRABLE INITIALLY DEFERRED)"
        )
        return conn

    w = GroupCommitWriter(connect)
    await w.start()
    yield w
    await w.close()


def insert(conn: sqlite3.Connection, name: str) -> str:
    conn.execute("INSERT INTO items (name) VALUES (?)", (name,))
    return name


def count(conn: sqlite3.Connection) -> int:
    return int(conn.execute("SELECT count(*) FROM items").fetchone()[0])


async def test_concurrent_operations_share_transactions(writer: GroupCommitWriter) -> None:
    """100 concurrent writes all commit, in far fewer transactions than writes."""
    before = writer.batches
    names = await asyncio.gather(*(writer.run(insert, f"n{i}") for i in range(100)))
    assert names == [f"n{i}" for i in range(100)]
    assert await writer.run(count) == 100
    assert writer.batches - before < 10


async def test_a_failing_operation_fails_only_its_caller(writer: GroupCommitWriter) -> None:
    """A duplicate key in one operation of a batch leaves the others of that batch committed."""
    await writer.run(insert, "taken")
    before = writer.batches
    results = await asyncio.gather(
        writer.run(insert, "a"), writer.run(insert, "taken"), writer.run(insert, "b"), return_exceptions=True
    )
    assert writer.batches - before == 1  # the three shared one transaction
    assert results[0] == "a" and results[2] == "b"
    assert isinstance(results[1], sqlite3.IntegrityError)
    assert await writer.run(count) == 3


async def test_an_operation_failing_alone_raises_its_own_error(writer: GroupCommitWriter) -> None:
    """A batch of one failing operation hands its caller that operation's error (not a failed COMMIT of the
    transaction it rolled back), and the writer goes on."""
    await writer.run(insert, "taken")
    with pytest.raises(sqlite3.IntegrityError):
        await writer.run(insert, "taken")
    assert await writer.run(insert, "next") == "next"
    assert await writer.run(count) == 2


async def test_a_failed_commit_fails_every_caller_and_stores_nothing(writer: GroupCommitWriter) -> None:
    """When COMMIT itself fails (a deferred constraint), every operation of the batch gets the error."""

    def orphan(conn: sqlite3.Connection) -> None:
        conn.execute("INSERT INTO children (parent) VALUES (42)")

    results = await asyncio.gather(writer.run(insert, "x"), writer.run(orphan), return_exceptions=True)
    assert all(isinstance(r, sqlite3.IntegrityError) for r in results)
    assert await writer.run(count) == 0
    assert await writer.run(insert, "after") == "after"  # the writer goes on


async def test_close_commits_queued_work_then_refuses(tmp_path: Path, writer: GroupCommitWriter) -> None:
    """Operations queued before close() still commit; run() after close is refused."""
    pending = [asyncio.ensure_future(writer.run(insert, f"q{i}")) for i in range(20)]
    await asyncio.sleep(0)  # let them queue
    await writer.close()
    assert [p.result() for p in pending] == [f"q{i}" for i in range(20)]
    with sqlite3.connect(tmp_path / "w.db") as conn:
        assert count(conn) == 20
    with pytest.raises(RuntimeError):
        await writer.run(insert, "late")


def thread_name(conn: sqlite3.Connection) -> str:
    return threading.current_thread().name


async def test_statements_run_on_the_loop_and_bulk_work_on_the_thread(writer: GroupCommitWriter) -> None:
    """Short operations run where their caller is; a batch holding bulk work goes to the writer thread."""
    assert await writer.run(thread_name) == threading.current_thread().name
    assert (await writer.run_bulk(thread_name)).startswith("relay-sqlite-writer")
    mixed = await asyncio.gather(writer.run(thread_name), writer.run_bulk(thread_name))
    assert all(name.startswith("relay-sqlite-writer") for name in mixed)  # one batch, run on the thread


async def test_a_failed_bulk_commit_stores_nothing(writer: GroupCommitWriter) -> None:
    """A batch on the writer thread whose COMMIT fails fails every caller and is rolled back."""

    def orphan(conn: sqlite3.Connection) -> None:
        conn.execute("INSERT INTO children (parent) VALUES (42)")

    results = await asyncio.gather(
        writer.run_bulk(insert, "x"), writer.run_bulk(orphan), return_exceptions=True
    )
    assert all(isinstance(r, sqlite3.IntegrityError) for r in results)
    assert await writer.run(count) == 0
    assert await writer.run_bulk(insert, "after") == "after"


def remember(conn: sqlite3.Connection, key: str) -> int:
    """Count, in the memo, the operations of this transaction that asked for `key`."""
    memo = memo_of(conn)
    memo[key] = memo.get(key, 0) + 1
    return int(memo[key])


async def test_the_memo_lasts_one_transaction(writer: GroupCommitWriter) -> None:
    """Operations of one batch share the memo; the next transaction starts with it empty."""
    assert await asyncio.gather(*(writer.run(remember, "k") for _ in range(3))) == [1, 2, 3]
    assert await writer.run(remember, "k") == 1


async def test_a_rolled_back_operation_empties_the_memo(writer: GroupCommitWriter) -> None:
    """What a failed operation may have left in the memo is not seen by the rest of its batch."""
    await writer.run(insert, "taken")

    def remember_then_fail(conn: sqlite3.Connection) -> None:
        remember(conn, "k")
        insert(conn, "taken")

    results = await asyncio.gather(
        writer.run(remember, "k"),
        writer.run(remember_then_fail),
        writer.run(remember, "k"),
        return_exceptions=True,
    )
    assert isinstance(results[1], sqlite3.IntegrityError)
    assert results[2] == 1  # the batch reran with savepoints, and the failure emptied the memo


def test_other_connections_keep_nothing() -> None:
    """A plain connection gets a fresh memo each time, so nothing is shared by mistake."""
    conn = sqlite3.connect(":memory:")
    memo_of(conn)["k"] = 1
    assert memo_of(conn) == {}
