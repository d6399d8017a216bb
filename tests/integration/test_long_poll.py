"""Long-poll: woken by the hub at commit, bounded, freed when the client leaves (over real HTTP)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import httpx
import orjson
import pytest

from relay.errors import ServiceUnavailable
from relay.settings import Settings
from tests.conftest import LiveRelay, Relay, open_relay, wait_for
from tests.integration.conftest import SettingsWith


@pytest.fixture
def settings(settings_with: SettingsWith) -> Settings:
    """A slow safety poll far away, so only a wake-up can answer a waiter in time; at most 50 waiters."""
    return settings_with(waiter_poll_s=300.0, max_waiters=50)


@pytest.fixture
async def relay(settings: Settings) -> AsyncIterator[Relay]:
    async with open_relay(settings) as opened:
        yield opened


async def final(relay: Relay, job_id: str, status: str = "succeeded") -> httpx.Response:
    return await relay.post_callback("demo", orjson.dumps({"id": job_id, "status": status, "output": job_id}))


async def test_waiter_is_woken_by_the_final_callback(relay: Relay) -> None:
    """A registered job's waiter answers with the result as soon as the final callback commits."""
    await relay.client.post("/v1/jobs", json={"source": "demo", "job_id": "j1"})
    waiting = asyncio.create_task(relay.client.get("/v1/jobs/demo/j1", params={"wait": 60}))
    await wait_for(lambda: relay.services.hub.count == 1)
    started = time.monotonic()
    assert (await final(relay, "j1")).status_code == 200
    answer = await asyncio.wait_for(waiting, 10)
    assert time.monotonic() - started < 10
    assert answer.json()["status"] == "succeeded" and answer.json()["result"]["output"] == "j1"
    assert relay.services.hub.count == 0


async def test_non_final_callback_keeps_the_waiter_waiting(relay: Relay) -> None:
    """A running callback does not answer the waiter; the final one does."""
    waiting = asyncio.create_task(relay.client.get("/v1/jobs/demo/j1", params={"wait": 60}))
    await wait_for(lambda: relay.services.hub.count == 1)
    await relay.post_callback("demo", orjson.dumps({"id": "j1", "status": "processing"}))
    assert await relay.services.store.get_job("demo", "j1") is not None  # answered once committed
    assert not waiting.done() and relay.services.hub.count == 1
    await final(relay, "j1", "failed")
    assert (await asyncio.wait_for(waiting, 10)).json()["status"] == "failed"


async def test_prefer_wait_header_holds_too(relay: Relay) -> None:
    """`Prefer: wait=S` holds like ?wait=S and says it was applied."""
    waiting = asyncio.create_task(relay.client.get("/v1/jobs/demo/j1", headers={"prefer": "wait=30"}))
    await wait_for(lambda: relay.services.hub.count == 1)
    await final(relay, "j1")
    answer = await asyncio.wait_for(waiting, 10)
    assert answer.json()["status"] == "succeeded" and answer.headers["preference-applied"] == "wait=30"


async def test_sixteen_waiters_on_one_job_all_wake(relay: Relay) -> None:
    """Every waiter of a job is answered by one callback."""
    waiting = [
        asyncio.create_task(relay.client.get("/v1/jobs/demo/j1", params={"wait": 60})) for _ in range(16)
    ]
    await wait_for(lambda: relay.services.hub.count == 16)
    await final(relay, "j1")
    answers = await asyncio.wait_for(asyncio.gather(*waiting), 10)
    assert {a.json()["status"] for a in answers} == {"succeeded"}


async def test_final_job_answers_at_once(relay: Relay) -> None:
    """Waiting on a job that is already final answers immediately without holding a waiter."""
    await final(relay, "j1")
    answer = await asyncio.wait_for(relay.client.get("/v1/jobs/demo/j1", params={"wait": 300}), 10)
    assert answer.json()["status"] == "succeeded"


async def test_wait_expires_with_the_job_as_it_is(relay: Relay) -> None:
    """When the wait is up the job is answered as it is (200), or 404 if still unknown."""
    await relay.client.post("/v1/jobs", json={"source": "demo", "job_id": "j1"})
    pending = await relay.client.get("/v1/jobs/demo/j1", params={"wait": 0.2})
    unknown = await relay.client.get("/v1/jobs/demo/j2", params={"wait": 0.2})
    assert pending.status_code == 200 and pending.json()["status"] == "pending"
    assert unknown.status_code == 404
    assert relay.services.hub.count == 0


async def test_client_hangup_frees_the_waiter(live_relay: LiveRelay) -> None:
    """A waiter whose client disconnects is released at once, not when its wait ends."""
    relay = live_relay
    client = httpx.AsyncClient(base_url=relay.base_url, headers=relay.client.headers)
    waiting = asyncio.create_task(client.get("/v1/jobs/demo/j1", params={"wait": 300}))
    await wait_for(lambda: relay.services.hub.count == 1)
    waiting.cancel()
    await client.aclose()
    await wait_for(lambda: relay.services.hub.count == 0)


@pytest.mark.parametrize("wait", ["0", "-1", "301", "soon"])
async def test_bad_wait_is_400(relay: Relay, wait: str) -> None:
    """wait must be in (0, 300]."""
    response = await relay.client.get("/v1/jobs/demo/j1", params={"wait": wait})
    assert response.status_code == 400 and response.json()["error"]["code"] == "bad_wait"


async def test_waiters_are_bounded(relay: Relay) -> None:
    """Past max_waiters a long-poll is refused with 503 instead of exhausting the server."""
    waiting = [
        asyncio.create_task(relay.client.get(f"/v1/jobs/demo/j{i}", params={"wait": 60})) for i in range(50)
    ]
    await wait_for(lambda: relay.services.hub.count == 50)
    refused = await relay.client.get("/v1/jobs/demo/extra", params={"wait": 60})
    assert refused.status_code == 503 and refused.json()["error"]["code"] == "too_many_waiters"
    assert "relay_waiters 50.0" in (await relay.client.get("/metrics")).text
    for i in range(50):
        await final(relay, f"j{i}")
    await asyncio.wait_for(asyncio.gather(*waiting), 10)
    assert relay.services.hub.count == 0


async def test_lost_wakeup_is_caught_by_the_slow_poll(settings_with: SettingsWith, database: str) -> None:
    """A result committed without a hub notification still reaches the waiter at the next store poll."""
    # No change feed on PostgreSQL either: its notification would wake the waiter as the hub would.
    unheard = f"{database}?listen=off" if database.startswith("postgresql:") else database
    async with open_relay(settings_with(database=unheard, waiter_poll_s=0.05)) as relay:
        waiting = asyncio.create_task(relay.client.get("/v1/jobs/demo/j1", params={"wait": 30}))
        await wait_for(lambda: relay.services.hub.count == 1)
        # Write straight to the store, bypassing ingest and so the hub (as another instance would).
        from relay.models import Callback, Status

        cb = Callback(job_id="j1", status=Status.SUCCEEDED, delivery_id="d", body=b"{}", result={})
        await relay.services.store.ingest("demo", cb, time.time(), 900)
        assert (await asyncio.wait_for(waiting, 10)).json()["status"] == "succeeded"


async def test_shutdown_answers_held_waiters_at_once(live_relay: LiveRelay) -> None:
    """When shutdown starts, held long-polls and streams answer with the job as it stands."""
    relay = live_relay
    await relay.client.post("/v1/jobs", json={"source": "demo", "job_id": "j1"})
    polling = asyncio.create_task(relay.client.get("/v1/jobs/demo/j1", params={"wait": 300}))
    async with relay.client.stream("GET", "/v1/jobs/demo/j1/events") as stream:
        await wait_for(lambda: relay.services.hub.count == 2)
        # What the exit signal does (handle_exit itself would re-raise SIGTERM in this test process).
        relay.server.should_exit = True
        relay.server.release_waiters()
        answer = await asyncio.wait_for(polling, 10)
        assert [line async for line in stream.aiter_lines()] == []
    assert answer.status_code == 200 and answer.json()["status"] == "pending"
    with pytest.raises(ServiceUnavailable, match="shutting down"):
        async with relay.services.hub.subscribe(("demo", "j2")):
            pass
