"""The embedded backend: SQLite, with its SQL, its group-commit writer and its numbered migrations."""

from __future__ import annotations

from relay.store.sqlite.migrations import SCHEMA_VERSION
from relay.store.sqlite.store import SQLiteStore, migrate_file

__all__ = ["SCHEMA_VERSION", "SQLiteStore", "migrate_file"]
