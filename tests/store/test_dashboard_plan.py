"""The dashboard's jobs page reads bounded ranges of indexes on both backends: the counts by status (each a
covering range of jobs_by_status, capped; relay/store/job_counts.py) and the list itself for every filter
(newest first, a page deep in the cursor too), never a scan of the table nor a sort of it."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from relay.models import Status
from relay.store import open_store
from relay.store.job_counts import JOB_COUNT_CAP, job_counts_sql
from relay.store.numbered import numbered
from relay.store.rows import list_jobs_sql
from relay.store.sqlite import migrate_file

# Each filter the page offers: (source, status, cursor position).
FILTERS: list[tuple[str | None, Status | None, int | None]] = [
    (None, None, None),
    ("fal", None, None),
    (None, Status.FAILED, None),
    ("fal", Status.FAILED, None),
    (None, None, 10_000),
    ("demo", Status.SUCCEEDED, 10_000),
]
_INSERT = "INSERT INTO jobs (source, job_id, status, created_at, updated_at) VALUES (?, ?, ?, 0, 0)"


def _jobs(count: int) -> list[tuple[str, str, str]]:
    """Jobs shaped as in use: mostly `demo`, mostly succeeded, every status present."""
    statuses = ["succeeded"] * 91 + ["failed"] * 3 + ["running"] * 3 + ["pending", "canceled", "timed_out"]
    return [
        ("fal" if i % 100 == 99 else "demo", f"j{i}", statuses[(i * 7 + i // 100) % 100])
        for i in range(count)
    ]


def test_sqlite_reads_counts_and_pages_through_indexes(tmp_path: Path) -> None:
    path = tmp_path / "relay.db"
    migrate_file(str(path))
    with sqlite3.connect(path) as conn:
        conn.executemany(_INSERT, _jobs(20_000))
        conn.execute("ANALYZE")
        counts = [row[3] for row in conn.execute(f"EXPLAIN QUERY PLAN {job_counts_sql(indexed=True)}")]
        pages = {f: _sqlite_plan(conn, *f) for f in FILTERS}
    conn.close()
    reads = [step for step in counts if " jobs " in f"{step} "]
    assert len(reads) == len(Status), counts
    assert all(step.startswith("SEARCH jobs USING COVERING INDEX jobs_by_status") for step in reads), counts
    for (source, status, before), plan in pages.items():
        assert not any("TEMP B-TREE" in step for step in plan), plan
        if source or status or before:  # with no filter: the rowid read backwards, LIMIT rows of it
            assert all(step.startswith("SEARCH jobs USING") for step in plan), plan


def _sqlite_plan(
    conn: sqlite3.Connection, source: str | None, status: Status | None, before: int | None
) -> list[str]:
    sql, params = list_jobs_sql(source=source, status=status, before=before, limit=51)
    return [row[3] for row in conn.execute(f"EXPLAIN QUERY PLAN {sql}", params)]


async def test_counts_stop_one_past_the_cap(tmp_path: Path) -> None:
    """One past the cap says "more": the page shows it as "10,000+"; smaller counts are exact."""
    path = tmp_path / "relay.db"
    migrate_file(str(path))
    with sqlite3.connect(path) as conn:
        rows = [("demo", f"s{i}", "succeeded") for i in range(JOB_COUNT_CAP + 50)]
        conn.executemany(_INSERT, [*rows, ("demo", "f1", "failed"), ("demo", "f2", "failed")])
    conn.close()
    store = await open_store(f"sqlite:///{path}")
    try:
        assert await store.count_jobs_capped() == {"succeeded": JOB_COUNT_CAP + 1, "failed": 2}
    finally:
        await store.close()


@pytest.mark.postgres
async def test_postgres_reads_counts_and_pages_through_indexes(postgres_database: str) -> None:
    """On 20,000 jobs shaped as in use, vacuumed and analyzed (as autovacuum leaves a table in use)."""
    conn = await asyncpg.connect(postgres_database)
    try:
        await conn.copy_records_to_table(
            "jobs",
            records=[(*job, 0.0, 0.0) for job in _jobs(20_000)],
            columns=("source", "job_id", "status", "created_at", "updated_at"),
        )
        await conn.execute("VACUUM ANALYZE jobs")
        counts = await _postgres_plan(conn, job_counts_sql(indexed=False), [])
        pages = {}
        for source, status, before in FILTERS:
            sql, params = list_jobs_sql(source=source, status=status, before=before, limit=51)
            pages[(source, status, before)] = await _postgres_plan(conn, numbered(sql), params)
    finally:
        await conn.close()
    # The common status (91%) may be read off the table: a scan under the cap's Limit, which stops at once.
    assert counts.count("Index Only Scan using jobs_by_status") >= len(Status) - 1, counts
    lines = counts.splitlines()
    assert all("Limit" in lines[n - 1] for n, line in enumerate(lines) if "Scan" in line), counts
    for (source, status, _), plan in pages.items():
        assert "Seq Scan" not in plan, plan
        # Source and status together: both indexes ANDed, then their few matches sorted (docs/decisions.md).
        assert "Sort" not in plan or (source and status and "BitmapAnd" in plan), plan


async def _postgres_plan(conn: asyncpg.Connection, sql: str, params: list[Any]) -> str:
    return "\n".join(row[0] for row in await conn.fetch(f"EXPLAIN {sql}", *params))
