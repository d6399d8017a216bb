"""Several relay instances on one PostgreSQL, in one test process: each is its own app with its own
lifespan, store, hub and loops, reached through `httpx.ASGITransport`. What one commits reaches the others'
waiters and deliverers through the database alone (LISTEN/NOTIFY, or polling where that is off)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest

from relay.app import UNHEARD_POLL_S, create_app
from relay.services import Services
from relay.settings import Settings
from relay.store.postgres.notify import Listener
from relay.ui import CallbackWindow
from tests.conftest import API_KEY, REPLICATE_SECRET, make_settings, signed_headers, wait_for
from tests.subscriber import subscriber

pytestmark = pytest.mark.postgres

SIGNING_SECRET = "whsec_c2lnbmluZy1zZWNyZXQtZm9yLXRlc3Rz"
# Long enough that only a notification (or the listener's own re-check) can wake a waiter within a test.
NEVER_POLL_S = 300.0


@dataclass
class Instance:
    """One relay process's app, as a client sees it."""

    services: Services
    client: httpx.AsyncClient

    async def post_callback(self, job_id: str, status: str = "succeeded") -> httpx.Response:
        body = json.dumps({"id": job_id, "status": status, "output": {"n": 1}}).encode()
        return await self.client.post(
            "/hooks/replicate", content=body, headers=signed_headers(REPLICATE_SECRET, body)
        )

    def listener(self) -> Listener:
        return self.services.loop(Listener)


@asynccontextmanager
async def instance(settings: Settings, *, worker: bool = True) -> AsyncIterator[Instance]:
    """An app with its lifespan (and loops) running, and a client for it."""
    app = create_app(settings, worker=worker)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(
            transport=transport, base_url="http://relay", headers={"authorization": f"Bearer {API_KEY}"}
        ) as client:
            yield Instance(app.state.services, client)


def settings_on(tmp_path: Path, database: str, **overrides: Any) -> Settings:
    return make_settings(
        tmp_path,
        database=database,
        waiter_poll_s=NEVER_POLL_S,
        allow_private_destinations=True,
        signing_secret=SIGNING_SECRET,
        **overrides,
    )


async def _listening(*instances: Instance) -> None:
    await wait_for(lambda: all(i.listener().connects >= 1 for i in instances))


async def test_a_waiter_on_one_instance_wakes_when_the_callback_commits_on_another(
    tmp_path: Path, postgres_database: str
) -> None:
    settings = settings_on(tmp_path, postgres_database)
    async with instance(settings) as a, instance(settings) as b:
        await _listening(a, b)
        waiting = asyncio.create_task(b.client.get("/v1/jobs/replicate/cross-1", params={"wait": 60}))
        await wait_for(lambda: b.services.hub.count == 1)
        assert (await a.post_callback("cross-1")).status_code == 200
        # The wait is 60 s and B never polls on its own: only A's notification can answer it this soon.
        answer = await asyncio.wait_for(waiting, 10)
        assert answer.status_code == 200
        assert answer.json()["status"] == "succeeded"
        assert answer.json()["result"]["output"] == {"n": 1}


async def test_a_stream_on_one_instance_gets_the_events_committed_on_another(
    tmp_path: Path, postgres_database: str
) -> None:
    settings = settings_on(tmp_path, postgres_database, sse_heartbeat_s=NEVER_POLL_S)
    async with instance(settings) as a, instance(settings) as b:
        await _listening(a, b)
        assert (await a.post_callback("cross-2", "processing")).status_code == 200
        # The stream answers once the job is final: its body holds every event, in order.
        streaming = asyncio.create_task(b.client.get("/v1/jobs/replicate/cross-2/events"))
        await wait_for(lambda: b.services.hub.count == 1)
        assert (await a.post_callback("cross-2")).status_code == 200
        answer = await asyncio.wait_for(streaming, 10)
        events = [line for line in answer.text.splitlines() if line.startswith("event: ")]
        assert events == ["event: job.running", "event: job.succeeded"]


async def test_a_lost_listening_connection_is_replaced_and_its_waiters_read_again(
    tmp_path: Path, postgres_database: str
) -> None:
    settings = settings_on(tmp_path, postgres_database)
    async with instance(settings) as a, instance(settings) as b:
        await _listening(a, b)
        waiting = asyncio.create_task(b.client.get("/v1/jobs/replicate/cross-3", params={"wait": 60}))
        await wait_for(lambda: b.services.hub.count == 1)
        # B's listening connection dies (a failover, an idle timeout); A commits while B hears nothing.
        pid = b.listener().backend_pid
        assert pid is not None
        conn = await asyncpg.connect(postgres_database)
        try:
            assert await conn.fetchval("SELECT pg_terminate_backend($1)", pid)
            gone = "SELECT count(*) = 0 FROM pg_stat_activity WHERE pid = $1"
            await wait_for(lambda: conn.fetchval(gone, pid))
        finally:
            await conn.close()
        assert (await a.post_callback("cross-3")).status_code == 200
        # B notices within its check interval, listens again, and wakes what it holds to read the database.
        answer = await asyncio.wait_for(waiting, 15)
        assert answer.json()["status"] == "succeeded"
        assert b.listener().connects == 2
        assert b.services.loop(Listener).problem() is None


async def test_without_listen_waiters_poll_the_shared_database(
    tmp_path: Path, postgres_database: str
) -> None:
    quiet = settings_on(tmp_path, f"{postgres_database}?listen=off")
    async with instance(settings_on(tmp_path, postgres_database)) as a, instance(quiet) as b:
        assert not any(isinstance(loop, Listener) for loop in b.services.loops)
        assert b.services.waiter_poll_s == UNHEARD_POLL_S
        waiting = asyncio.create_task(b.client.get("/v1/jobs/replicate/cross-4", params={"wait": 60}))
        await wait_for(lambda: b.services.hub.count == 1)
        assert (await a.post_callback("cross-4")).status_code == 200
        answer = await asyncio.wait_for(waiting, 10)
        assert answer.json()["status"] == "succeeded"


async def test_deliveries_queued_on_an_http_only_instance_are_sent_by_a_worker(
    tmp_path: Path, postgres_database: str
) -> None:
    settings = settings_on(tmp_path, postgres_database, delivery_poll_s=NEVER_POLL_S)
    async with (
        subscriber() as receiver,
        instance(settings, worker=False) as front,
        instance(settings) as worker,
    ):
        # An HTTP-only instance runs no deliverer and no sweeper: it only listens (and counts for /ui).
        assert [type(loop) for loop in front.services.loops] == [Listener, CallbackWindow]
        await _listening(front, worker)
        created = await front.client.post("/v1/subscriptions", json={"url": receiver.url})
        assert created.status_code == 201
        assert (await front.post_callback("cross-5")).status_code == 200
        # The worker's deliverer polls every 300 s here: the front's notification is what wakes it.
        (received,) = await receiver.received_at_least(1, within=10)
        assert received.verify(created.json()["secret"])["data"]["job_id"] == "cross-5"
        # A manual retry on the front reaches the worker the same way.
        (delivery,) = (await front.client.get("/v1/deliveries")).json()["deliveries"]
        await wait_for(lambda: _delivered(front, delivery["id"]))
        assert (await front.client.post(f"/v1/deliveries/{delivery['id']}/retry")).status_code == 202
        await receiver.received_at_least(2, within=10)


async def _delivered(relay: Instance, delivery_id: str) -> bool:
    answer = await relay.client.get(f"/v1/deliveries/{delivery_id}")
    return bool(answer.json()["status"] == "delivered")
