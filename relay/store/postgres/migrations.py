"""Numbered migrations of the PostgreSQL schema, recorded in `relay_migrations`, one runner at a time."""

from __future__ import annotations

from typing import TYPE_CHECKING

from relay.store.numbered import numbered_sql, schema_version

if TYPE_CHECKING:
    from asyncpg import Connection

__all__ = ["SCHEMA_VERSION", "migrate", "migrations"]

# Any fixed number will do: it only has to be the same for every relay migrating one database.
_LOCK_KEY = 0x72656C6179  # "relay"

_LEDGER = (
    "CREATE TABLE IF NOT EXISTS relay_migrations ("
    " version INTEGER PRIMARY KEY, applied_at TIMESTAMPTZ NOT NULL DEFAULT now())"
)


def migrations() -> dict[int, str]:
    """Every migration's SQL by the version it brings the database to, in order."""
    return numbered_sql("relay.store.postgres")


SCHEMA_VERSION = schema_version("relay.store.postgres")


async def migrate(conn: Connection) -> list[int]:
    """Apply the migrations the database has not had, in order, in one transaction; answer their numbers."""
    async with conn.transaction():
        # Several relays starting at once: the first migrates, the others wait here, then find nothing to do.
        await conn.execute("SELECT pg_advisory_xact_lock($1)", _LOCK_KEY)
        await conn.execute(_LEDGER)
        done = {row[0] for row in await conn.fetch("SELECT version FROM relay_migrations")}
        newest = max(done, default=0)
        if newest > SCHEMA_VERSION:
            raise RuntimeError(
                f"the database is at schema {newest}, newer than this relay ({SCHEMA_VERSION})"
            )
        applied = []
        for number, sql in migrations().items():
            if number in done:
                continue
            await conn.execute(sql)  # no arguments: the simple protocol, which runs several statements
            await conn.execute("INSERT INTO relay_migrations (version) VALUES ($1)", number)
            applied.append(number)
        return applied


async def migrate_url(url: str) -> list[int]:
    """Apply the pending migrations to the database at `url`; a failure is a RuntimeError without the URL."""
    import asyncpg

    try:
        conn = await asyncpg.connect(url)
    except (OSError, asyncpg.PostgresError) as exc:
        # The message may quote the connection string, and so a password: name the kind of failure only.
        raise RuntimeError(f"cannot connect to the PostgreSQL database ({type(exc).__name__})") from None
    try:
        return await migrate(conn)
    except asyncpg.PostgresError as exc:
        raise RuntimeError(f"migration failed: {exc}") from None
    finally:
        await conn.close()
