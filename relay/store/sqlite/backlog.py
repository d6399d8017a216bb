"""The backlog /metrics reports, read on SQLite's reader (the statement is in relay/store/backlog.py)."""

from __future__ import annotations

import aiosqlite

from relay.store.backlog import Backlog, backlog_from_rows, backlog_sql

__all__ = ["read_backlog"]

# The planner is pinned to the bounded reads: it would find the oldest due delivery and the overdue jobs
# through the status indexes (every undelivered delivery, every open job).
_BACKLOG_SQL = backlog_sql("?1", indexed=True)


async def read_backlog(db: aiosqlite.Connection, now: float) -> Backlog:
    return backlog_from_rows(await db.execute_fetchall(_BACKLOG_SQL, (now,)))
