"""Leases for SQLite, on the group-commit writer's connection (the SQL is shared: ../leases.py)."""

from __future__ import annotations

import sqlite3

from relay.store.leases import RELEASE_LEASE_SQL, TAKE_LEASE_SQL

__all__ = ["release_lease", "take_lease"]


def take_lease(conn: sqlite3.Connection, name: str, holder: str, now: float, ttl_s: float) -> bool:
    """Take or renew the lease; False while another holder's runs (the upsert then writes no row)."""
    return conn.execute(TAKE_LEASE_SQL, (name, holder, now + ttl_s, now)).rowcount > 0


def release_lease(conn: sqlite3.Connection, name: str, holder: str) -> None:
    conn.execute(RELEASE_LEASE_SQL, (name, holder))
