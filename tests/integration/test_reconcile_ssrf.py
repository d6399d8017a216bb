"""Reconcile sends a provider's token to that provider's API only, whatever URLs a job's metadata names.

Two real loopback servers: the fake provider API (the source's `api_base_url`) and a trap that records every
connection and every byte it is sent. `allow_private_destinations` is false, as by default.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import pytest

from relay.providers.api import OriginRefused
from tests.conftest import Clock, Relay, open_relay
from tests.fake_provider_api import FakeProviderApi
from tests.integration.conftest import SettingsWith
from tests.integration.test_reconcile import T0, job, register, sources, sweep

TRAP_ANSWER = b'{"id": "p1", "status": "succeeded", "output": "internal secret", "error": null}'
FAL_QUEUE = "/fal-ai/flux/requests"


@dataclass
class Trap:
    """A loopback HTTP server that keeps every connection's raw bytes (request line, headers, body)."""

    url: str = ""
    port: int = 0
    answer: bytes = TRAP_ANSWER
    status: str = "200 OK"
    location: str = ""
    received: list[bytes] = field(default_factory=list)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.received.append(b"")  # counted on connect: a connection that sends nothing still shows
        try:
            self.received[-1] = await reader.readuntil(b"\r\n\r\n")
        except asyncio.IncompleteReadError as exc:
            self.received[-1] = exc.partial
        extra = f"location: {self.location}\r\n" if self.location else ""
        head = f"HTTP/1.1 {self.status}\r\ncontent-type: application/json\r\n{extra}"
        writer.write(f"{head}content-length: {len(self.answer)}\r\nconnection: close\r\n\r\n".encode())
        writer.write(self.answer)
        await writer.drain()
        writer.close()


@asynccontextmanager
async def trap_server(**answer: Any) -> AsyncIterator[Trap]:
    """Serve a Trap on a free loopback port for the block."""
    trap = Trap(**answer)
    server = await asyncio.start_server(trap._serve, "127.0.0.1", 0)
    trap.port = server.sockets[0].getsockname()[1]
    trap.url = f"http://127.0.0.1:{trap.port}"
    try:
        yield trap
    finally:
        server.close()
        await server.wait_closed()


@pytest.fixture
async def trap() -> AsyncIterator[Trap]:
    async with trap_server() as server:
        yield server


@pytest.fixture
async def relay(settings_with: SettingsWith, api: FakeProviderApi) -> AsyncIterator[Relay]:
    settings = settings_with(sources=sources(api), allow_private_destinations=False)
    async with open_relay(settings, clock=Clock(T0), background=False) as opened:
        yield opened


def api_port(api: FakeProviderApi) -> int:
    return int(api.base_url.rsplit(":", 1)[1])


# Ways a job can name the trap: another port on the API's own host, user info that reads as the API, a name.
HOSTILE: dict[str, Callable[[Trap, FakeProviderApi], str]] = {
    "other_port": lambda trap, api: trap.url,
    "userinfo": lambda trap, api: f"http://127.0.0.1:{api_port(api)}@127.0.0.1:{trap.port}",
    "hostname": lambda trap, api: f"http://localhost:{trap.port}",
}


@pytest.mark.parametrize("spelling", HOSTILE)
async def test_metadata_urls_off_the_api_are_never_requested(
    relay: Relay, api: FakeProviderApi, trap: Trap, spelling: str
) -> None:
    """fal and Replicate jobs whose metadata URLs name another server: it gets nothing; relay's URLs are."""
    hostile = HOSTILE[spelling](trap, api)
    fal_urls = {"status_url": f"{hostile}{FAL_QUEUE}/r1/status", "response_url": f"{hostile}{FAL_QUEUE}/r1"}
    await register(relay, "fal", "r1", metadata={"model_id": "fal-ai/flux", **fal_urls})
    await register(relay, "fal", "r2", metadata=fal_urls)  # nothing to fall back on
    await register(relay, "replicate", "p1", metadata={"status_url": f"{hostile}/v1/predictions/p1"})
    api.answer(f"{FAL_QUEUE}/r1/status", {"status": "COMPLETED"})
    api.answer(f"{FAL_QUEUE}/r1", {"images": [{"url": "https://fal.media/a.png"}]})
    api.answer("/v1/predictions/p1", {"id": "p1", "status": "succeeded", "output": ["x.png"], "error": None})
    await sweep(relay, T0 + 101)
    assert trap.received == []
    assert sorted(api.requests) == [
        (f"{FAL_QUEUE}/r1", "Key fal-key"),
        (f"{FAL_QUEUE}/r1/status", "Key fal-key"),
        ("/v1/predictions/p1", "Bearer r8_test"),
    ]
    assert (await job(relay, "fal", "r1"))["result"] == {"images": [{"url": "https://fal.media/a.png"}]}
    assert (await job(relay, "replicate", "p1"))["result"]["output"] == ["x.png"]
    assert (await job(relay, "fal", "r2"))["status"] == "timed_out"


async def test_metadata_urls_on_the_api_origin_are_followed(relay: Relay, api: FakeProviderApi) -> None:
    """fal's documented status_url/response_url and a Replicate training's urls.get, on the API, are used."""
    queue = f"{api.base_url}/fal-ai/flux/dev/requests/r5"
    await register(relay, "fal", "r5", metadata={"status_url": f"{queue}/status", "response_url": queue})
    await register(relay, "replicate", "t1", metadata={"status_url": f"{api.base_url}/v1/trainings/t1"})
    api.answer("/fal-ai/flux/dev/requests/r5/status", {"status": "COMPLETED"})
    api.answer("/fal-ai/flux/dev/requests/r5", {"video": {"url": "https://fal.media/v.mp4"}})
    api.answer("/v1/trainings/t1", {"id": "t1", "status": "succeeded", "output": {"version": "v"}})
    await sweep(relay, T0 + 101)
    assert (await job(relay, "fal", "r5"))["result"] == {"video": {"url": "https://fal.media/v.mp4"}}
    assert (await job(relay, "replicate", "t1"))["status"] == "succeeded"
    assert sorted(api.requests) == [
        ("/fal-ai/flux/dev/requests/r5", "Key fal-key"),
        ("/fal-ai/flux/dev/requests/r5/status", "Key fal-key"),
        ("/v1/trainings/t1", "Bearer r8_test"),
    ]


async def test_a_refused_url_is_logged_without_the_token(
    relay: Relay, caplog: pytest.LogCaptureFixture
) -> None:
    """The warning names the source, the job and the refused host, and never the token."""
    meta = {"status_url": "http://metadata.internal:8080/latest", "model_id": "fal-ai/flux"}
    await register(relay, "fal", "r7", metadata=meta)
    with caplog.at_level(logging.WARNING, logger="relay"):
        await sweep(relay, T0 + 101)
    refused = [r.getMessage() for r in caplog.records if "metadata.internal" in r.getMessage()]
    assert len(refused) == 1
    assert refused[0].startswith("source fal: job r7: metadata.status_url names metadata.internal, not ")
    assert "fal-key" not in caplog.text
    assert relay.services.providers["fal"].warnings["foreign_status_url"] == 1


async def test_the_provider_client_sends_to_provider_apis_only(
    relay: Relay, api: FakeProviderApi, trap: Trap
) -> None:
    """The reconcile client itself refuses any other origin before connecting; the APIs' origins pass."""
    client = relay.services.provider_http
    for url in (trap.url, f"http://localhost:{api_port(api)}/v1", "https://api.replicate.com/v1"):
        with pytest.raises(OriginRefused):
            await client.get(url, headers={"authorization": "Bearer r8_test"})
    assert trap.received == []
    assert (await client.get(f"{api.base_url}/v1/models")).status_code == 404
    assert api.paths() == ["/v1/models"]


async def test_a_redirect_from_the_provider_api_is_not_followed(
    settings_with: SettingsWith, api: FakeProviderApi
) -> None:
    """A 302 from the provider's API is no answer: relay does not follow it, even to the same origin."""
    async with trap_server(status="302 Found", answer=b"{}") as redirector:
        redirector.location = f"{redirector.url}/v1/elsewhere"
        table = sources(api)
        table["replicate"]["api_base_url"] = f"{redirector.url}/v1"
        settings = settings_with(sources=table)
        async with open_relay(settings, clock=Clock(T0), background=False) as relay:
            await register(relay, "replicate", "p1")
            await sweep(relay, T0 + 101)
            assert (await job(relay, "replicate", "p1"))["status"] == "timed_out"
    assert len(redirector.received) == 1
    assert redirector.received[0].startswith(b"GET /v1/predictions/p1 HTTP/1.1\r\n")
    assert api.requests == []
