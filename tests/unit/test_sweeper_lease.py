"""The sweeper's lease: who holds it and for how long (the rules of relay/sweeper.py)."""

from __future__ import annotations

import os
import socket
import sqlite3
from pathlib import Path

import httpx

from relay.hub import Hub
from relay.ingest import Ingestor
from relay.models import Registration
from relay.settings import load_settings
from relay.store.sqlite import SQLiteStore
from relay.sweeper import Sweeper, holder_id
from relay.tokens import Tokens


def test_a_holder_names_its_host_and_process_and_is_never_repeated() -> None:
    """Host and pid say which relay holds the lease; the random part tells two sweepers of one process (or
    a restarted relay that got the same pid) apart."""
    names = {holder_id() for _ in range(100)}
    assert len(names) == 100
    for name in names:
        host, pid, random_part = name.rsplit(":", 2)
        assert (host, pid) == (socket.gethostname(), str(os.getpid())) and len(random_part) == 8


async def test_the_lease_lasts_a_few_sweep_intervals(tmp_path: Path) -> None:
    """A sweeper renews every interval, so its lease lasts LEASE_ROUNDS of them: a late round or two do not
    lose it, and a dead holder is replaced within that."""
    settings = load_settings(
        None, environ={}, overrides={"secret_key": "k", "sweep_interval_s": 2.5, "database": "sqlite:///x.db"}
    )
    store = await SQLiteStore.open(str(tmp_path / "relay.db"))
    try:
        async with httpx.AsyncClient() as http:
            made = [
                Sweeper(settings, store, {}, Ingestor({}, store, Hub(1), Tokens("k")), http) for _ in "ab"
            ]
    finally:
        await store.close()
    assert [s.lease_ttl_s for s in made] == [7.5, 7.5]  # three sweep intervals: a round may run late twice
    assert made[0].holder != made[1].holder


async def test_rounds_renew_the_lease_at_most_once_an_interval(tmp_path: Path) -> None:
    """Rounds that drain a backlog follow each other at once: only the first of an interval writes the
    lease; a round an interval later renews it. Another sweeper, refused, sweeps nothing (a job overdue
    all along) until the lease lapses."""
    path = tmp_path / "relay.db"
    settings = load_settings(
        None,
        environ={},
        overrides={"secret_key": "k", "sweep_interval_s": 5.0, "database": f"sqlite:///{path}"},
    )
    store = await SQLiteStore.open(str(path))

    def expiry() -> float:
        with sqlite3.connect(path) as conn:
            (expires_at,) = conn.execute("SELECT expires_at FROM leases WHERE name = 'sweeper'").fetchone()
        conn.close()
        return float(expires_at)

    try:
        async with httpx.AsyncClient() as http:
            sweeper, other = (
                Sweeper(settings, store, {}, Ingestor({}, store, Hub(1), Tokens("k")), http) for _ in "ab"
            )
            ttl = sweeper.lease_ttl_s
            await sweeper.run_once(1000.0)
            await sweeper.run_once(1004.9)
            assert expiry() == 1000.0 + ttl
            await sweeper.run_once(1005.0)
            assert expiry() == 1005.0 + ttl
            await store.register(Registration("demo", "j", 1.0), 1000.0, 900.0)  # overdue from 1001
            assert await other.run_once(1006.0) == 0
            assert await other.run_once(1006.1) == 0
            assert await other.run_once(1005.0 + ttl) == 1
    finally:
        await store.close()
