"""The backlog /metrics reports, read on PostgreSQL (the statement is in relay/store/backlog.py)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from relay.store.backlog import Backlog, backlog_from_rows, backlog_sql

if TYPE_CHECKING:
    import asyncpg

__all__ = ["read_backlog"]

_BACKLOG_SQL = backlog_sql("$1::double precision", indexed=False)


async def read_backlog(pool: asyncpg.Pool, now: float) -> Backlog:
    return backlog_from_rows(await pool.fetch(_BACKLOG_SQL, now))
