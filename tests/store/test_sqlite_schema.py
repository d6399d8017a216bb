"""The SQLite schema is its numbered migrations: a new database and an upgraded one end up the same."""

from __future__ import annotations

import re
import sqlite3
from pathlib import Path

import pytest
from click.testing import CliRunner

from relay.cli import main
from relay.store.sqlite import SCHEMA_VERSION, migrate_file
from relay.store.sqlite import migrations as sqlite_migrations
from relay.store.sqlite.migrations import migrations

FROZEN = Path(__file__).parent


def schema_of(path: Path) -> dict[str, str]:
    """Each table's and index's SQL by name, without comments, `IF NOT EXISTS` or layout."""
    with sqlite3.connect(path) as conn:
        rows = conn.execute("SELECT name, sql FROM sqlite_master WHERE type IN ('table', 'index')").fetchall()
    normalised = {}
    for name, sql in rows:
        text = re.sub(r"--[^\n]*", "", sql or "").replace("IF NOT EXISTS ", "")
        text = re.sub(r"\s+", " ", text)
        normalised[name] = re.sub(r"\s*([(),])\s*", r"\1", text).strip()
    return normalised


def frozen_database(path: Path, version: int) -> Path:
    """An empty database as relay `version` made it, from its frozen schema."""
    with sqlite3.connect(path) as conn:
        conn.executescript((FROZEN / f"schema_v{version}.sql").read_text())
        conn.execute(f"PRAGMA user_version = {version}")
    conn.close()
    return path


def config_for(tmp_path: Path, database: Path) -> Path:
    """A config file for `relay migrate` on `database`."""
    config = tmp_path / "relay.toml"
    config.write_text(f'database = "sqlite:///{database}"\nsecret_key = "test-secret-key"\n')
    return config


def test_migrations_are_numbered_one_to_the_schema_version() -> None:
    """Every version from 1 to SCHEMA_VERSION has its migration, and only those."""
    assert list(migrations()) == list(range(1, SCHEMA_VERSION + 1))


def test_a_failing_migration_leaves_the_version_before_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each migration is its own transaction: one that fails leaves nothing of itself, and those before it
    stay applied."""
    steps = {1: "CREATE TABLE a (x);", 2: "CREATE TABLE b (x); INSERT INTO nowhere VALUES (1);"}
    monkeypatch.setattr(sqlite_migrations, "migrations", lambda: steps)
    path = tmp_path / "relay.db"
    with pytest.raises(sqlite3.OperationalError, match="nowhere"):
        migrate_file(str(path))
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == 1
        assert [row[0] for row in conn.execute("SELECT name FROM sqlite_master")] == ["a"]
    conn.close()


def test_a_new_database_has_the_schema_of_an_upgraded_one(tmp_path: Path) -> None:
    """Every migration applied to an empty file gives the tables and indexes that versions 2 and 3, migrated
    step by step, end up with."""
    fresh = tmp_path / "fresh.db"
    assert migrate_file(str(fresh)) == list(range(1, SCHEMA_VERSION + 1))
    expected = schema_of(fresh)
    assert {"jobs", "callbacks", "subscriptions", "deliveries", "delivery_attempts"} <= set(expected)
    for version in (2, 3):
        old = frozen_database(tmp_path / f"v{version}.db", version)
        assert migrate_file(str(old)) == list(range(version + 1, SCHEMA_VERSION + 1))
        assert schema_of(old) == expected, f"from version {version}"


def test_relay_migrate_applies_what_is_pending_once(tmp_path: Path) -> None:
    """`relay migrate` brings the configured database up to date and says what it applied; run again, it
    applies nothing."""
    database = tmp_path / "relay.db"
    frozen_database(database, 2)
    config = config_for(tmp_path, database)
    first = CliRunner().invoke(main, ["migrate", "--config", str(config)])
    assert first.exit_code == 0, first.output
    assert first.stdout.splitlines() == [f"applied migration {n:04}" for n in (3, 4, 5, 6, 7, 8)]
    again = CliRunner().invoke(main, ["migrate", "--config", str(config)])
    assert again.exit_code == 0, again.output
    assert again.stdout.splitlines() == ["the database is up to date: nothing to apply"]
    with sqlite3.connect(database) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    conn.close()


def test_relay_migrate_refuses_a_database_newer_than_itself(tmp_path: Path) -> None:
    """A database from a later relay is left alone, with an error naming both versions."""
    database = tmp_path / "relay.db"
    with sqlite3.connect(database) as conn:
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    conn.close()
    config = config_for(tmp_path, database)
    result = CliRunner().invoke(main, ["migrate", "--config", str(config)])
    assert result.exit_code == 2
    assert f"schema {SCHEMA_VERSION + 1}, newer than this relay ({SCHEMA_VERSION})" in result.output
