"""Several `relay serve` processes on one PostgreSQL, as they run in production behind a load balancer:
waiters and callbacks on different instances, a duplicate storm split across them, and an instance killed
under load while the other carries on."""

from __future__ import annotations

import asyncio
import itertools
import signal
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import orjson
import pytest

from tests.conftest import DEMO_SECRET, signed_headers, wait_for
from tests.e2e.conftest import RelayProcess, run_cli, write_config
from tests.subscriber import HANG, Reply, subscriber

pytestmark = pytest.mark.postgres

Spawn = Callable[..., RelayProcess]


def _callback(
    job_id: str, status: str = "succeeded", msg_id: str | None = None
) -> tuple[bytes, dict[str, str]]:
    body = orjson.dumps({"id": job_id, "status": status, "output": {"job": job_id}})
    return body, signed_headers(DEMO_SECRET, body, msg_id=msg_id)


def _shared_config(tmp_path: Path, database: str, **extra: Any) -> Path:
    """A config for relays on one PostgreSQL database, delivering to subscribers on loopback."""
    return write_config(tmp_path / "relay.toml", database=database, allow_private_destinations=True, **extra)


async def _two(spawn: Spawn, config: Path) -> tuple[RelayProcess, RelayProcess]:
    """Two relays on one config; the first is ready (and has swept once) before the second starts."""
    a = spawn("--config", str(config))
    await a.ready()
    b = spawn("--config", str(config))
    await b.ready()
    return a, b


async def _sweeper_holder(database: str) -> str | None:
    conn = await asyncpg.connect(database)
    try:
        holder: str | None = await conn.fetchval("SELECT holder FROM leases WHERE name = 'sweeper'")
        return holder
    finally:
        await conn.close()


async def test_a_waiter_and_a_duplicate_storm_across_two_instances(
    tmp_path: Path, spawn: Spawn, postgres_database: str
) -> None:
    # Only a notification from B can answer the waiter on A in time.
    config = _shared_config(tmp_path, postgres_database, waiter_poll_s=300.0)
    a, b = await _two(spawn, config)
    async with subscriber() as sub, a.client() as on_a, b.client() as on_b:
        created = await on_a.post("/v1/subscriptions", json={"url": sub.url})
        assert created.status_code == 201
        await wait_for(lambda: _subscribed(on_b, created.json()["id"]))

        # A waiter on A is answered by a callback that lands on B.
        waiting = asyncio.create_task(on_a.get("/v1/jobs/demo/shared-1", params={"wait": 30}))
        await wait_for(lambda: _waiters(on_a, 1))
        body, headers = _callback("shared-1")
        assert (await on_b.post("/hooks/demo", content=body, headers=headers)).status_code == 200
        answer = await asyncio.wait_for(waiting, 10)
        assert answer.json()["status"] == "succeeded"

        # 64 copies of one final result, four provider retries of each of 16 sends, half to each instance.
        copies = [_callback("storm-1", msg_id=f"msg_storm_{n % 16}") for n in range(64)]
        clients = itertools.cycle((on_a, on_b))
        answers = await asyncio.gather(
            *(next(clients).post("/hooks/demo", content=body, headers=h) for body, h in copies)
        )
        assert Counter(r.status_code for r in answers) == {200: 64}

        # One final transition: one event, one delivery per subscriber, whichever instance is asked.
        for client in (on_a, on_b):
            events = (await client.get("/v1/jobs/demo/storm-1/events")).text
            assert events.count("event: job.succeeded") == 1
            history = (await client.get("/v1/jobs/demo/storm-1/callbacks")).json()["callbacks"]
            assert len(history) == 16  # each send kept once, the 48 redeliveries not at all
        await wait_for(lambda: _all_delivered(on_b, 2), within=10)
        assert sorted(r.verify(created.json()["secret"])["data"]["job_id"] for r in sub.received) == [
            "shared-1",
            "storm-1",
        ]


async def test_killing_an_instance_under_load_loses_nothing_it_acknowledged(
    tmp_path: Path, spawn: Spawn, postgres_database: str
) -> None:
    config = _shared_config(
        tmp_path,
        postgres_database,
        sweep_interval_s=0.5,  # the sweeper's lease lasts three intervals
        delivery_timeout_s=1.0,
        delivery_lease_margin_s=1.0,
        retry_schedule_s=[0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5],
        retry_jitter=0.0,
        circuit_failures=1000,
    )
    # Until the kill every delivery hangs, so both instances hold some in flight when A dies.
    async with subscriber(then=HANG) as sub:
        a, b = await _two(spawn, config)
        async with a.client() as on_a, b.client() as on_b:
            created = await on_a.post("/v1/subscriptions", json={"url": sub.url})
            assert created.status_code == 201
            await wait_for(lambda: _subscribed(on_b, created.json()["id"]))

            acknowledged: list[str] = []

            async def send(client: httpx.AsyncClient, job_id: str) -> None:
                body, headers = _callback(job_id)
                try:
                    answer = await client.post("/hooks/demo", content=body, headers=headers)
                except httpx.TransportError:
                    return  # A died before answering: not acknowledged, the provider would retry
                if answer.status_code == 200:
                    acknowledged.append(job_id)

            async def load(client: httpx.AsyncClient, prefix: str) -> None:
                for n in range(150):
                    await asyncio.gather(*(send(client, f"{prefix}-{n}-{k}") for k in range(4)))

            loads = [asyncio.create_task(load(on_a, "a")), asyncio.create_task(load(on_b, "b"))]
            await wait_for(lambda: sum(job.startswith("a-") for job in acknowledged) >= 40, within=20)
            await wait_for(lambda: len(sub.received) >= 4, within=10)  # deliveries in flight
            # A started first, so its sweeper holds the lease; a job due in a second is due after the kill.
            assert (await _sweeper_holder(postgres_database) or "").split(":")[1] == str(a.proc.pid)
            registered = await on_b.post("/v1/jobs", json={"source": "demo", "job_id": "due", "timeout_s": 1})
            assert registered.status_code == 201
            a.signal(signal.SIGKILL)
            assert await a.exited(within=10) == -signal.SIGKILL
            await asyncio.gather(*loads)

            # Every callback either instance acknowledged is stored, and reads back from the survivor.
            by_a = [job for job in acknowledged if job.startswith("a-")]
            assert len(by_a) >= 40 and len(acknowledged) > len(by_a)
            for job_id in acknowledged:
                job = (await on_b.get(f"/v1/jobs/demo/{job_id}")).json()
                assert job["status"] == "succeeded", job_id

            # B's sweeper takes the lease once A's lapses, and times the job out.
            await wait_for(lambda: _status(on_b, "due", "timed_out"), within=15)
            assert (await _sweeper_holder(postgres_database) or "").split(":")[1] == str(b.proc.pid)

            # B sends A's deliveries once their leases lapse: every acknowledged job reaches the subscriber.
            sub.then = Reply(200)
            secret = created.json()["secret"]
            await wait_for(lambda: _all_delivered(on_b, len(acknowledged)), within=60)
            received = {r.verify(secret)["data"]["job_id"] for r in sub.received}
            assert received >= set(acknowledged)


async def _status(client: httpx.AsyncClient, job_id: str, status: str) -> bool:
    return bool((await client.get(f"/v1/jobs/demo/{job_id}")).json()["status"] == status)


async def _waiters(client: httpx.AsyncClient, held: int) -> bool:
    """Whether the instance holds `held` long-poll waiters now (its /metrics says)."""
    metrics = (await client.get("/metrics")).text
    return f"relay_waiters {float(held)}" in metrics


async def _subscribed(client: httpx.AsyncClient, sub_id: str) -> bool:
    return (await client.get(f"/v1/subscriptions/{sub_id}")).status_code == 200


async def _all_delivered(client: httpx.AsyncClient, expected: int) -> bool:
    """Whether at least `expected` deliveries exist and every one is delivered."""
    statuses: list[Any] = []
    cursor = None
    while True:
        params = {"limit": 200, **({"cursor": cursor} if cursor else {})}
        page = (await client.get("/v1/deliveries", params=params)).json()
        statuses += [d["status"] for d in page["deliveries"]]
        cursor = page["next_cursor"]
        if not cursor:
            break
    return len(statuses) >= expected and all(status == "delivered" for status in statuses)


async def test_http_only_instances_beside_a_worker(
    tmp_path: Path, spawn: Spawn, postgres_database: str
) -> None:
    config = write_config(
        tmp_path / "relay.toml", database=postgres_database, allow_private_destinations=True
    )
    front = spawn("--config", str(config), "--no-worker")
    worker = spawn("--config", str(config), command="worker")
    await front.ready()
    async with subscriber() as sub, front.client() as client:
        created = await client.post("/v1/subscriptions", json={"url": sub.url})
        assert created.status_code == 201
        body, headers = _callback("split-1")
        assert (await client.post("/hooks/demo", content=body, headers=headers)).status_code == 200
        (received,) = await sub.received_at_least(1, within=15)
        assert received.verify(created.json()["secret"])["data"]["job_id"] == "split-1"
    worker.signal(signal.SIGTERM)
    assert await worker.exited(within=10) == 0, worker.stderr
    assert "relay worker stopped" in worker.stderr
    await front.stop()


@pytest.mark.parametrize("args", [("worker",), ("serve", "--no-worker")])
def test_splitting_across_processes_is_refused_on_sqlite(tmp_path: Path, args: tuple[str, ...]) -> None:
    config = write_config(tmp_path / "relay.toml")  # SQLite
    result = run_cli(*args, "--config", str(config), cwd=tmp_path)
    assert result.returncode == 2
    assert "needs a database they share" in result.stderr
    assert "postgresql://" in result.stderr
