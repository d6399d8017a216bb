"""Numbered migrations of the SQLite schema: `migrations/NNNN.sql` takes `PRAGMA user_version` to NNNN."""

from __future__ import annotations

import sqlite3

from relay.store.numbered import numbered_sql, schema_version

__all__ = ["SCHEMA_VERSION", "migrate", "migrations"]


def migrations() -> dict[int, str]:
    """Every migration's SQL by the version it brings the database to, in order."""
    return numbered_sql("relay.store.sqlite")


SCHEMA_VERSION = schema_version("relay.store.sqlite")


def migrate(conn: sqlite3.Connection) -> list[int]:
    """Apply the migrations `conn`'s database has not had, in order; answer their numbers."""
    (version,) = conn.execute("PRAGMA user_version").fetchone()
    if version > SCHEMA_VERSION:
        raise RuntimeError(f"the database is at schema {version}, newer than this relay ({SCHEMA_VERSION})")
    applied = []
    for number, sql in migrations().items():
        if number <= version:
            continue
        # One transaction each, the version bumped inside it: a failed migration leaves the previous version.
        try:
            conn.executescript(f"BEGIN; {sql}; PRAGMA user_version = {number}; COMMIT;")
        except BaseException:
            if conn.in_transaction:
                conn.rollback()
            raise
        applied.append(number)
    if version == 0 and applied:
        # A new database's later migrations drop tables its earlier ones made: give their pages back, so the
        # writer's full-disk probe (which must allocate a page) finds no free one, as on a fresh schema.
        conn.execute("VACUUM")
    return applied
