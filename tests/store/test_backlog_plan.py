"""The backlog /metrics reads is bounded on both backends: every read of deliveries and jobs is a range of
an index, never a scan of the table, so a scrape's cost does not grow with the tables (each count also stops
at COUNT_CAP; relay/store/backlog.py). The values themselves are checked in tests/integration/test_metrics.py.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import asyncpg
import pytest

from relay.store.postgres.backlog import _BACKLOG_SQL as POSTGRES_SQL
from relay.store.sqlite import migrate_file
from relay.store.sqlite.backlog import _BACKLOG_SQL as SQLITE_SQL

T0 = 1_900_000_000.0


def test_sqlite_reads_the_backlog_through_its_indexes(tmp_path: Path) -> None:
    path = tmp_path / "relay.db"
    migrate_file(str(path))
    with sqlite3.connect(path) as conn:
        plan = [row[3] for row in conn.execute(f"EXPLAIN QUERY PLAN {SQLITE_SQL}", (T0,))]
    conn.close()
    reads = [step for step in plan if " deliveries " in f"{step} " or " jobs " in f"{step} "]
    assert len(reads) == 8 and all(step.startswith("SEARCH") for step in reads), plan
    assert sum("COVERING INDEX deliveries_by_subscription" in step for step in reads) == 6
    assert any("deliveries_due" in step for step in reads)
    assert any("jobs_open_deadline" in step for step in reads)
    assert not any("TEMP B-TREE" in step for step in plan)


# A table shaped as in use: most deliveries delivered, a few dead, retrying or pending; a third to jobs' own
# subscribers; few open jobs, fewer overdue. Vacuumed and analyzed, as autovacuum leaves a table in use.
_FILL = [
    "INSERT INTO subscriptions (id, url, secret, created_at)"
    " SELECT 'sub_' || i, 'u', 's', 0 FROM generate_series(1, 5) AS i",
    "INSERT INTO deliveries (event_row, event_id, event_type, source, job_id, subscription_id, url, target,"
    " endpoint, status, next_attempt_at, created_at, updated_at)"
    " SELECT i, 'e', 'job.succeeded', 'demo', 'j' || i,"
    "  CASE WHEN i % 3 = 0 THEN NULL ELSE 'sub_' || (i % 5 + 1) END, 'u', 't' || i, 'ep',"
    "  CASE WHEN i % 100 < 95 THEN 'delivered' WHEN i % 100 < 98 THEN 'dead'"
    "   WHEN i % 100 = 98 THEN 'retrying' ELSE 'pending' END,"
    "  CASE WHEN i % 100 < 98 THEN NULL ELSE $1 + (i % 200) - 100 END, 0, 0"
    " FROM generate_series(1, 20000) AS i",
    "INSERT INTO jobs (source, job_id, status, created_at, updated_at, deadline)"
    " SELECT 'demo', 'j' || i, CASE WHEN i % 100 < 97 THEN 'succeeded' ELSE 'running' END, 0, 0,"
    "  $1 + (i % 20000) - 100"
    " FROM generate_series(1, 20000) AS i",
]


@pytest.mark.postgres
async def test_postgres_reads_the_backlog_through_its_indexes(postgres_database: str) -> None:
    """On 20,000 deliveries shaped as in use the planner picks the bounded reads itself; it does at a million
    too, in about 7 ms (docs/decisions.md)."""
    conn = await asyncpg.connect(postgres_database)
    try:
        for sql in _FILL:
            await conn.execute(sql, *([T0] if "$1" in sql else []))
        await conn.execute("VACUUM ANALYZE")
        plan = "\n".join(row[0] for row in await conn.fetch(f"EXPLAIN {POSTGRES_SQL}", T0))
    finally:
        await conn.close()
    assert "Seq Scan on deliveries" not in plan and "Seq Scan on jobs" not in plan, plan
    assert plan.count("Index Only Scan using deliveries_by_subscription") == 6, plan
    assert "using deliveries_due" in plan and "using jobs_open_deadline" in plan, plan
