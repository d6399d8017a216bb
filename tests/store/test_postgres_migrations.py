"""The PostgreSQL schema is its numbered migrations, applied once each however many relays start at once."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import asyncpg
import pytest

from relay.store.postgres.migrations import SCHEMA_VERSION, migrate, migrate_url, migrations
from relay.store.sqlite import migrate_file

pytestmark = pytest.mark.postgres

FROZEN = Path(__file__).parent / "schema_postgres.txt"

_COLUMNS = (
    "SELECT table_name, column_name, data_type, is_nullable, coalesce(column_default, ''),"
    " is_identity FROM information_schema.columns WHERE table_schema = 'public'"
    " ORDER BY table_name, ordinal_position"
)
_CONSTRAINTS = (
    "SELECT c.conrelid::regclass::text, c.conname, pg_get_constraintdef(c.oid) FROM pg_constraint c"
    " JOIN pg_namespace n ON n.oid = c.connamespace WHERE n.nspname = 'public' ORDER BY 1, 2"
)
_INDEXES = "SELECT tablename, indexdef FROM pg_indexes WHERE schemaname = 'public' ORDER BY 1, 2"


async def schema_of(url: str) -> list[str]:
    """Every column, constraint and index of the public schema, one line each, in a stable order."""
    conn = await asyncpg.connect(url)
    try:
        lines = [f"column {' '.join(map(str, row))}" for row in await conn.fetch(_COLUMNS)]
        lines += [f"constraint {' '.join(row)}" for row in await conn.fetch(_CONSTRAINTS)]
        lines += [f"index {row[0]} {row[1]}" for row in await conn.fetch(_INDEXES)]
    finally:
        await conn.close()
    return lines


def test_migrations_are_numbered_one_to_the_schema_version() -> None:
    """Every version from 1 to SCHEMA_VERSION has its migration, and only those."""
    assert list(migrations()) == list(range(1, SCHEMA_VERSION + 1))


async def test_migrating_twice_applies_nothing_the_second_time(empty_postgres_database: str) -> None:
    """The runner is idempotent: a migrated database is left as it is."""
    assert await migrate_url(empty_postgres_database) == list(range(1, SCHEMA_VERSION + 1))
    assert await migrate_url(empty_postgres_database) == []


async def test_concurrent_runners_apply_each_migration_once(empty_postgres_database: str) -> None:
    """Relays starting together: the advisory lock lets one migrate, the others find nothing to do."""
    conns = [await asyncpg.connect(empty_postgres_database) for _ in range(4)]
    try:
        applied = await asyncio.gather(*(migrate(conn) for conn in conns))
        versions = [row[0] for row in await conns[0].fetch("SELECT version FROM relay_migrations")]
    finally:
        for conn in conns:
            await conn.close()
    assert sorted(applied) == [[], [], [], list(range(1, SCHEMA_VERSION + 1))]
    assert versions == list(range(1, SCHEMA_VERSION + 1))


async def test_a_newer_database_is_left_alone(empty_postgres_database: str) -> None:
    """A database migrated by a later relay is refused, and not touched."""
    await migrate_url(empty_postgres_database)
    conn = await asyncpg.connect(empty_postgres_database)
    try:
        await conn.execute("INSERT INTO relay_migrations (version) VALUES ($1)", SCHEMA_VERSION + 1)
        with pytest.raises(RuntimeError, match="newer than this relay"):
            await migrate(conn)
    finally:
        await conn.close()


async def test_a_failing_migration_leaves_nothing(
    empty_postgres_database: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The migrations run in one transaction: one that fails leaves no table and no version behind."""
    steps = {1: "CREATE TABLE a (x INTEGER);", 2: "INSERT INTO nowhere VALUES (1);"}
    monkeypatch.setattr("relay.store.postgres.migrations.migrations", lambda: steps)
    with pytest.raises(RuntimeError, match="migration failed"):
        await migrate_url(empty_postgres_database)
    assert await schema_of(empty_postgres_database) == []


async def test_the_schema_matches_its_frozen_form(postgres_database: str) -> None:
    """Tables, columns, constraints and indexes after the migrations are exactly those frozen in
    schema_postgres.txt (a change to the schema changes that file in the same commit)."""
    assert await schema_of(postgres_database) == FROZEN.read_text().splitlines()


async def test_tables_and_columns_are_sqlites(postgres_database: str, tmp_path: Path) -> None:
    """The two backends have the same tables with the same columns, in the same order."""
    migrate_file(str(tmp_path / "relay.db"))
    with sqlite3.connect(tmp_path / "relay.db") as db:
        tables = [row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
        sqlite_columns = {t: [c[1] for c in db.execute(f"PRAGMA table_info({t})")] for t in tables}
    db.close()
    postgres_columns: dict[str, list[str]] = {}
    for line in await schema_of(postgres_database):
        kind, table, column, *_ = line.split(" ")
        if kind == "column" and table != "relay_migrations":
            postgres_columns.setdefault(table, []).append(column)
    assert postgres_columns == sqlite_columns
