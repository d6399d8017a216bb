"""Another connection holding the write lock, and a full disk: nothing stalls, writes fail as 503s."""

from __future__ import annotations

import asyncio
import sqlite3
import statistics
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
import orjson
import pytest

from relay.settings import Settings
from relay.store.sqlite import SQLiteStore
from tests.conftest import Relay, open_relay, wait_for
from tests.store.test_sqlite_writer_health import cap_at_current_size

pytestmark = pytest.mark.sqlite_only("a second sqlite3 connection holds the file's write lock; a full disk")

MARGIN_S = 0.1  # how much slower than usual a request may answer while the lock is held
ROUTES = ("/healthz", "/no-such-path", "/v1/jobs/demo/j0")  # the health check, a 404, a job read


@pytest.fixture
async def relay(settings: Settings) -> AsyncIterator[Relay]:
    """The relay with its loops stopped: their first rounds' writes would race the lock the tests take (and
    queue ahead of the callbacks they time)."""
    async with open_relay(settings, background=False) as opened:
        yield opened


def database_path(settings: Settings) -> Path:
    return Path(settings.database.removeprefix("sqlite:///"))


@asynccontextmanager
async def write_lock(settings: Settings) -> AsyncIterator[sqlite3.Connection]:
    """A second connection to the relay's file holding `BEGIN EXCLUSIVE` (as the sqlite3 shell would)."""
    conn = sqlite3.connect(database_path(settings), isolation_level=None, check_same_thread=False, timeout=10)
    try:
        await asyncio.to_thread(conn.execute, "BEGIN EXCLUSIVE")  # a commit in flight may hold it a moment
        yield conn
    finally:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        conn.close()


async def timed(client: httpx.AsyncClient, path: str) -> tuple[float, httpx.Response]:
    started = time.perf_counter()
    response = await client.get(path)
    return time.perf_counter() - started, response


async def usual_times(client: httpx.AsyncClient, samples: int = 5) -> dict[str, float]:
    """The median time of each route in ROUTES, measured now."""
    times: dict[str, list[float]] = {path: [] for path in ROUTES}
    for _ in range(samples):
        for path in ROUTES:
            times[path].append((await timed(client, path))[0])
    return {path: statistics.median(seconds) for path, seconds in times.items()}


def final(job_id: str, output: object = "done") -> bytes:
    return orjson.dumps({"id": job_id, "status": "succeeded", "output": output})


async def healthz(relay: Relay) -> httpx.Response:
    return await relay.client.get("/healthz")


def writer_of(relay: Relay) -> SQLiteStore:
    store = relay.services.store
    assert isinstance(store, SQLiteStore)
    return store


async def test_a_held_write_lock_stalls_no_request(relay: Relay) -> None:
    """While another connection holds the write lock, reads, 404s and /healthz (503 database_busy) answer in
    their usual time, a callback waits without stalling them and lands once the lock is released."""
    assert (await relay.post_callback("demo", final("j0"))).status_code == 200
    usual = await usual_times(relay.client)
    async with write_lock(relay.settings) as lock:
        locked = await usual_times(relay.client)
        for path in ROUTES:
            assert locked[path] - usual[path] < MARGIN_S, (path, usual[path], locked[path])
        answer = await healthz(relay)
        assert answer.status_code == 503 and answer.json()["error"]["code"] == "database_busy", answer.text

        callback = asyncio.create_task(relay.post_callback("demo", final("j1")))
        await wait_for(lambda: writer_of(relay).writer.health.waiting_since is not None)
        waiting = await usual_times(relay.client, samples=3)  # the writer thread is waiting for the lock
        for path in ROUTES:
            assert waiting[path] - usual[path] < MARGIN_S, (path, usual[path], waiting[path])
        answer = await healthz(relay)
        assert answer.json()["error"]["code"] == "database_busy" and "waited" in answer.text, answer.text
        assert not callback.done()
        lock.execute("ROLLBACK")
        response = await callback
    assert response.status_code == 200, response.text
    job = await relay.client.get("/v1/jobs/demo/j1")
    assert job.json()["status"] == "succeeded"
    await wait_for(relay.healthy)


async def test_a_write_that_cannot_get_the_lock_is_a_503_and_stores_nothing(relay: Relay) -> None:
    """A callback whose batch cannot get the lock in time is a 503 database_busy, stored nowhere; later
    ones fail at once until the lock is free, and the provider's retry then lands."""
    writer_of(relay).writer.lock_wait_s = 0.3
    async with write_lock(relay.settings):
        started = time.perf_counter()
        first = await relay.post_callback("demo", final("j1"))
        assert first.status_code == 503 and first.json()["error"]["code"] == "database_busy", first.text
        assert time.perf_counter() - started < 0.3 + 1.0  # the bounded wait, not the old 5 s busy timeout
        started = time.perf_counter()
        second = await relay.post_callback("demo", final("j2"))
        assert second.status_code == 503 and time.perf_counter() - started < MARGIN_S  # no second wait
        registration = await relay.client.post("/v1/jobs", json={"source": "demo", "job_id": "j3"})
        assert registration.status_code == 503, registration.text
        assert (await relay.client.get("/v1/jobs/demo/j1")).status_code == 404
        assert (await healthz(relay)).json()["error"]["code"] == "database_busy"
    await wait_for(relay.healthy)
    for job_id in ("j1", "j2"):
        retried = await relay.post_callback("demo", final(job_id))
        assert retried.status_code == 200 and retried.json()["duplicate"] is False, retried.text
    assert (await relay.client.get("/v1/jobs/demo/j1")).json()["status"] == "succeeded"


async def test_a_full_disk_fails_callbacks_with_503_and_recovers(relay: Relay) -> None:
    """With no room left (max_page_count on the writer's connection), callbacks are 503 writes_failing and
    store nothing, /healthz is 503; once room is made, /healthz is 200 and callbacks land."""
    writer = writer_of(relay).writer

    await writer.run(cap_at_current_size)
    big = "x" * 20_000  # overflow pages: the insert must grow the file
    answers = await asyncio.gather(*(relay.post_callback("demo", final(f"f{i}", big)) for i in range(3)))
    for answer in [*answers, await healthz(relay)]:
        assert answer.status_code == 503 and answer.json()["error"]["code"] == "writes_failing", answer.text
        assert "full" in answer.json()["error"]["message"]
    assert (await relay.client.get("/v1/jobs/demo/f0")).status_code == 404

    await writer.run(lambda conn: conn.execute("PRAGMA max_page_count = 1073741823"))
    assert (await healthz(relay)).status_code == 200
    retried = await relay.post_callback("demo", final("f0", big))
    assert retried.status_code == 200, retried.text
    assert (await relay.client.get("/v1/jobs/demo/f0")).json()["result"]["output"] == big
