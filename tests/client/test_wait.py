"""`wait()` against a real relay over HTTP: it answers at the callback, and rides through a job not known
yet, a dropped connection and a relay that cannot be reached, within its own timeout."""

from __future__ import annotations

import asyncio
import time

import httpx
import pytest

from relay.client import AsyncClient, Client, RelayConnectionError, WaitTimeout
from tests.client.conftest import port_of, post_status
from tests.client.proxy import tcp_proxy
from tests.conftest import API_KEY, LiveRelay, free_port, wait_for


class RecordingTransport(httpx.AsyncHTTPTransport):
    """httpx's own transport, noting each answer's status code."""

    def __init__(self) -> None:
        super().__init__()
        self.statuses: list[int] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        response = await super().handle_async_request(request)
        self.statuses.append(response.status_code)
        return response


async def test_wait_returns_the_final_job_at_the_callback(live_relay: LiveRelay, client: AsyncClient) -> None:
    """A waiter held on a long-poll gets the final job as soon as the callback is stored."""
    await client.register("demo", "j1", metadata={"prompt": "fox"})
    waiting = asyncio.create_task(client.wait("demo", "j1", timeout=30))
    await wait_for(lambda: live_relay.services.hub.count == 1)
    posted_at = time.monotonic()
    await post_status(live_relay, "j1", "succeeded", output=["https://cdn.example/fox.png"])
    job = await asyncio.wait_for(waiting, 10)
    assert time.monotonic() - posted_at < 2  # woken, not a poll that ended on its own
    assert job.is_final and job.status == "succeeded"
    assert job.result == {"id": "j1", "status": "succeeded", "output": ["https://cdn.example/fox.png"]}
    assert job.metadata == {"prompt": "fox"} and job.finished_at is not None and job.finished_at.tzinfo


async def test_the_sync_client_waits_too(live_relay: LiveRelay) -> None:
    """Client.wait (blocking, here in a thread) returns the final job, failed ones included."""

    def wait_blocking() -> str:
        with Client(live_relay.base_url, api_key=API_KEY) as client:
            return client.wait("demo", "j2", timeout=30).status

    waiting = asyncio.create_task(asyncio.to_thread(wait_blocking))
    await wait_for(lambda: live_relay.services.hub.count == 1)
    await post_status(live_relay, "j2", "failed", error="out of memory")
    assert await asyncio.wait_for(waiting, 10) == "failed"


async def test_wait_keeps_asking_about_a_job_relay_does_not_know_yet(live_relay: LiveRelay) -> None:
    """A 404 for a job not known yet is waited through: the job's first callback ends the wait."""
    transport = RecordingTransport()
    async with AsyncClient(live_relay.base_url, api_key=API_KEY, poll_s=0.1, transport=transport) as client:
        waiting = asyncio.create_task(client.wait("demo", "later", timeout=30))
        await wait_for(lambda: transport.statuses.count(404) >= 2)
        await post_status(live_relay, "later", "succeeded")
        job = await asyncio.wait_for(waiting, 10)
    assert job.status == "succeeded"


async def test_wait_raises_wait_timeout_with_the_job_as_last_seen(client: AsyncClient) -> None:
    """At its timeout, wait() raises WaitTimeout carrying the job as it was (None for a job never seen)."""
    await client.register("demo", "slow")
    started = time.monotonic()
    with pytest.raises(WaitTimeout) as raised:
        await client.wait("demo", "slow", timeout=0.3)
    assert 0.3 <= time.monotonic() - started < 2
    assert raised.value.job is not None and raised.value.job.status == "pending"
    assert raised.value.code == "wait_timeout" and raised.value.status_code is None
    with pytest.raises(WaitTimeout) as raised:
        await client.wait("demo", "never-heard-of", timeout=0.2)
    assert raised.value.job is None


async def test_wait_survives_its_connection_being_cut(live_relay: LiveRelay) -> None:
    """A long-poll whose connection drops (a proxy restarts) is sent again; the job still comes back."""
    async with (
        tcp_proxy(port_of(live_relay.base_url)) as proxy,
        AsyncClient(proxy.url, api_key=API_KEY) as client,
    ):
        waiting = asyncio.create_task(client.wait("demo", "cut", timeout=30))
        await wait_for(lambda: live_relay.services.hub.count == 1)
        proxy.refusing = True
        proxy.drop()
        await wait_for(lambda: len(proxy.sent) == 1 and live_relay.services.hub.count == 0)
        await post_status(live_relay, "cut", "succeeded")  # while the waiter cannot reach relay
        await wait_for(lambda: proxy.refused >= 1)  # and it has tried, and been refused
        proxy.refusing = False
        job = await asyncio.wait_for(waiting, 10)
    assert job.status == "succeeded"
    assert proxy.requests_with("GET /v1/jobs/demo/cut?wait=") >= 2


async def test_wait_on_an_unreachable_relay_raises_a_connection_error_at_its_timeout() -> None:
    """Nothing listening: wait() keeps trying until its timeout, then says relay could not be reached."""
    async with AsyncClient(f"http://127.0.0.1:{free_port()}", api_key=API_KEY) as client:
        started = time.monotonic()
        with pytest.raises(RelayConnectionError):
            await client.wait("demo", "x", timeout=0.5)
    assert 0.5 <= time.monotonic() - started < 3
