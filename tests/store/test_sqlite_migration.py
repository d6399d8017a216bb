"""A database written by an earlier relay opens in this one with everything it held."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import orjson

from relay.models import Callback, Status
from relay.store.sqlite import SCHEMA_VERSION, SQLiteStore

T0 = 1_800_000_000.0
SCHEMA_V2 = Path(__file__).with_name("schema_v2.sql")


def _two_jobs(conn: sqlite3.Connection, j1_callbacks: int) -> None:
    """j1, succeeded at T0 + 2 after `j1_callbacks` callbacks, and j2, running since T0 (every schema's jobs
    table has these columns)."""
    conn.executemany(
        "INSERT INTO jobs (id, source, job_id, status, result, created_at, updated_at, finished_at,"
        " callbacks) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        [
            (1, "demo", "j1", "succeeded", b'{"v":1}', T0, T0 + 2, T0 + 2, j1_callbacks),
            (2, "demo", "j2", "running", None, T0, T0, None, 1),
        ],
    )


def _version_2_database(path: Path) -> None:
    """Two jobs as relay 2 stored them: callbacks and events keyed by (source, job_id), a queued delivery."""
    job = {"source": "demo", "job_id": "j1", "status": "succeeded"}
    with sqlite3.connect(path) as conn:
        conn.executescript(SCHEMA_V2.read_text())
        _two_jobs(conn, j1_callbacks=2)
        conn.executemany(
            "INSERT INTO callbacks (id, source, job_id, delivery_id, received_at, status, via, body)"
            " VALUES (?, ?, ?, ?, ?, ?, 'webhook', x'7b7d')",
            [
                (1, "demo", "j1", "d1", T0, "running"),
                (2, "demo", "j2", "d2", T0, "running"),
                (3, "demo", "j1", "d3", T0 + 2, "succeeded"),
            ],
        )
        conn.executemany(
            "INSERT INTO events (id, event_id, source, job_id, type, created_at, data)"
            " VALUES (?, ?, ?, ?, ?, ?, ?)",
            [
                (1, "evt_a", "demo", "j1", "job.running", T0, orjson.dumps({**job, "status": "running"})),
                (2, "evt_b", "demo", "j2", "job.running", T0, orjson.dumps({**job, "job_id": "j2"})),
                (3, "evt_c", "demo", "j1", "job.succeeded", T0 + 2, orjson.dumps(job)),
            ],
        )
        conn.execute(
            "INSERT INTO deliveries (event_row, event_id, event_type, source, job_id, url, target, endpoint,"
            " status, next_attempt_at, created_at, updated_at) VALUES (3, 'evt_c', 'job.succeeded', 'demo',"
            " 'j1', 'http://127.0.0.1:9/hook', 'http://127.0.0.1:9/hook', 'http://127.0.0.1:9', 'pending',"
            " ?, ?, ?)",
            (T0, T0, T0),
        )
        conn.execute("PRAGMA user_version = 2")


async def test_a_version_2_database_keeps_its_history(tmp_path: Path) -> None:
    """Callbacks and events come across in order under their jobs; dedupe and deliveries still see them."""
    path = tmp_path / "relay.db"
    _version_2_database(path)
    store = await SQLiteStore.open(str(path))
    try:
        history = await store.list_callbacks("demo", "j1")
        assert [(c.delivery_id, c.status) for c in history] == [
            ("d1", Status.RUNNING),
            ("d3", Status.SUCCEEDED),
        ]
        assert [c.delivery_id for c in await store.list_callbacks("demo", "j2")] == ["d2"]
        events = await store.list_events("demo", "j1")
        assert [(e.id, e.event_id, e.type) for e in events] == [
            (1, "evt_a", "job.running"),
            (3, "evt_c", "job.succeeded"),
        ]
        assert [e.id for e in await store.list_events("demo", "j1", after=1)] == [3]
        # A redelivery of a callback stored before the upgrade is still a duplicate.
        again = Callback("j2", Status.RUNNING, "d2", b"{}")
        assert (await store.ingest("demo", again, T0 + 5, 900.0)).duplicate
        # The queued delivery still finds its event's body.
        claims = await store.claim_deliveries(
            T0 + 1, limit=5, lease_s=30, per_endpoint=5, room={}, blocked=()
        )
        assert [orjson.loads(claim.body)["id"] for claim in claims] == ["evt_c"]
    finally:
        await store.close()
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        assert not {"callbacks_v2", "events_v2"} & tables


SCHEMA_V3 = Path(__file__).with_name("schema_v3.sql")
HOOK = "http://127.0.0.1:9/hook"


def _version_3_database(path: Path) -> None:
    """Relay 3's shape: events in a table of their own, numbered apart from the history, one of them with
    no history entry of its own, and deliveries queued for two of them."""
    job = {"source": "demo", "job_id": "j1", "status": "succeeded"}
    with sqlite3.connect(path) as conn:
        conn.executescript(SCHEMA_V3.read_text())
        _two_jobs(conn, j1_callbacks=3)
        conn.executemany(
            "INSERT INTO callbacks (id, job_row, delivery_id, received_at, status, via, body)"
            " VALUES (?, ?, ?, ?, ?, 'webhook', x'7b7d')",
            [
                (1, 1, "d1", T0, "running"),
                (2, 2, "d2", T0, "running"),
                (3, 1, "d1b", T0 + 1, "running"),  # changed nothing: no event
                (4, 1, "d3", T0 + 2, "succeeded"),
            ],
        )
        conn.executemany(
            "INSERT INTO events (id, event_id, job_row, type, created_at, data) VALUES (?, ?, ?, ?, ?, ?)",
            [
                (1, "evt_a", 1, "job.running", T0, orjson.dumps({**job, "status": "running"})),
                (2, "evt_b", 2, "job.running", T0, orjson.dumps({**job, "job_id": "j2"})),
                (3, "evt_c", 1, "job.succeeded", T0 + 2, orjson.dumps(job)),
                (4, "evt_u", 2, "job.succeeded", T0 + 5, orjson.dumps({**job, "job_id": "j2"})),
            ],
        )
        conn.executemany(
            "INSERT INTO deliveries (event_row, event_id, event_type, source, job_id, url, target, endpoint,"
            " status, next_attempt_at, created_at, updated_at)"
            " VALUES (?, ?, 'job.succeeded', 'demo', ?, ?, ?, 'http://127.0.0.1:9', 'pending', ?, ?, ?)",
            [(3, "evt_c", "j1", HOOK, HOOK, T0, T0, T0), (4, "evt_u", "j2", HOOK, HOOK, T0, T0, T0)],
        )
        conn.execute("PRAGMA user_version = 3")


async def test_a_version_3_database_folds_its_events_into_the_history(tmp_path: Path) -> None:
    """Each event joins the history entry that made it, one without an entry becomes an entry, and queued
    deliveries still reach their event's body."""
    path = tmp_path / "relay.db"
    _version_3_database(path)
    store = await SQLiteStore.open(str(path))
    try:
        history = await store.list_callbacks("demo", "j1")
        assert [(c.delivery_id, c.status) for c in history] == [
            ("d1", Status.RUNNING),
            ("d1b", Status.RUNNING),
            ("d3", Status.SUCCEEDED),
        ]
        assert [(e.id, e.event_id, e.type) for e in await store.list_events("demo", "j1")] == [
            (1, "evt_a", "job.running"),
            (4, "evt_c", "job.succeeded"),
        ]
        assert [e.event_id for e in await store.list_events("demo", "j1", after=1)] == ["evt_c"]
        kept = await store.list_events("demo", "j2")
        assert [(e.event_id, e.type, e.data["job_id"]) for e in kept] == [
            ("evt_b", "job.running", "j2"),
            ("evt_u", "job.succeeded", "j2"),
        ]
        assert [(c.delivery_id, c.via) for c in await store.list_callbacks("demo", "j2")] == [
            ("d2", "webhook"),
            ("evt_u", "event"),
        ]
        claims = await store.claim_deliveries(
            T0 + 1, limit=5, lease_s=30, per_endpoint=5, room={}, blocked=()
        )
        bodies = {orjson.loads(claim.body)["id"]: orjson.loads(claim.body) for claim in claims}
        assert set(bodies) == {"evt_c", "evt_u"}
        assert bodies["evt_c"]["data"] == {"source": "demo", "job_id": "j1", "status": "succeeded"}
        # New work goes on from the folded history: a redelivery is refused, a new change is an event.
        assert (
            await store.ingest("demo", Callback("j2", Status.RUNNING, "d2", b"{}"), T0 + 6, 900.0)
        ).duplicate
        await store.ingest("demo", Callback("j2", Status.FAILED, "d4", b"{}"), T0 + 7, 900.0)
        assert [e.type for e in await store.list_events("demo", "j2", after=kept[-1].id)] == ["job.failed"]
    finally:
        await store.close()
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == 8
        tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master")}
        assert not {"events", "events_v3", "events_v3_by_entry", "callbacks_by_event_migrating"} & tables
