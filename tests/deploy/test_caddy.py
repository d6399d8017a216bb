"""deploy/Caddyfile: Caddy's own validation, and the real Caddy binary in front of a real relay."""

from __future__ import annotations

import asyncio
import json
import subprocess
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from relay.services import Services
from tests.conftest import DEMO_SECRET, free_port, make_settings, signed_headers, start_relay, wait_for
from tests.deploy.deploy_files import DEPLOY, run, tool

CADDYFILE = DEPLOY / "Caddyfile"


def adapted(tmp_path: Path, **environ: str) -> list[dict[str, Any]]:
    """The HTTP servers Caddy makes of the Caddyfile with `environ`, after validating it."""
    env = {"HOME": str(tmp_path), "XDG_DATA_HOME": str(tmp_path), "XDG_CONFIG_HOME": str(tmp_path), **environ}
    result = run(
        tool("caddy"), "adapt", "--config", str(CADDYFILE), "--adapter", "caddyfile", "--validate", env=env
    )
    assert result.returncode == 0, result.stderr
    servers: dict[str, dict[str, Any]] = json.loads(result.stdout)["apps"]["http"]["servers"]
    return list(servers.values())


def proxy(server: dict[str, Any]) -> dict[str, Any]:
    """The server's one reverse_proxy handler (in a host matcher's subroute where the site names a host)."""
    found = [h for h in _handlers(server["routes"]) if h["handler"] == "reverse_proxy"]
    assert len(found) == 1, server
    return found[0]


def _handlers(routes: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for route in routes:
        for handler in route.get("handle", []):
            yield handler
            yield from _handlers(handler.get("routes", []))


def test_caddyfile_defaults_proxy_to_both_compose_relays(tmp_path: Path) -> None:
    """With compose's defaults: plain HTTP on :80, both relays as upstreams, active checks on /healthz."""
    (server,) = adapted(tmp_path)
    assert server["listen"] == [":80"]
    handler = proxy(server)
    assert [u["dial"] for u in handler["upstreams"]] == ["relay-a:8000", "relay-b:8000"]
    assert handler["health_checks"]["active"]["uri"] == "/healthz"
    assert handler["flush_interval"] == -1


def test_caddyfile_with_a_domain_serves_https(tmp_path: Path) -> None:
    """RELAY_SITE set to a domain name: Caddy serves it on 443, with a certificate it obtains itself."""
    (server,) = adapted(tmp_path, RELAY_SITE="relay.example.com")
    assert server["listen"] == [":443"]
    assert server["routes"][0]["match"] == [{"host": ["relay.example.com"]}]
    assert server.get("automatic_https", {}).get("disable") is not True


@pytest.fixture
def caddy_home(tmp_path: Path) -> Path:
    home = tmp_path / "caddy"
    home.mkdir()
    return home


@asynccontextmanager
async def caddy_in_front(upstreams: list[str], home: Path) -> AsyncIterator[str]:
    """Run deploy/Caddyfile with real Caddy on a free loopback port; yield its base URL."""
    port = free_port()
    env = {
        "HOME": str(home),
        "XDG_DATA_HOME": str(home),
        "XDG_CONFIG_HOME": str(home),
        "CADDY_ADMIN": "off",  # several tests may run Caddy at once: no shared admin port
        "RELAY_SITE": f"http://127.0.0.1:{port}",
        "RELAY_UPSTREAMS": " ".join(upstreams),
    }
    with (home / "caddy.log").open("wb") as log:
        proc = await asyncio.create_subprocess_exec(
            tool("caddy"),
            *("run", "--config", str(CADDYFILE), "--adapter", "caddyfile"),
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
        )
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        await asyncio.wait_for(proc.wait(), timeout=10)


async def test_caddy_balances_long_polls_and_streams_to_the_live_relay(
    tmp_path: Path, caddy_home: Path
) -> None:
    """Through Caddy with one upstream dead: /healthz always answers 200, a held long-poll gets the result
    posted through Caddy, and a server-sent stream's heartbeat arrives while the stream is still open."""
    settings = make_settings(tmp_path, sse_heartbeat_s=0.2)
    async with start_relay(settings) as relay:
        dead = f"127.0.0.1:{free_port()}"
        live = relay.base_url.removeprefix("http://")
        async with (
            caddy_in_front([dead, live], caddy_home) as url,
            httpx.AsyncClient(base_url=url, headers=dict(relay.client.headers), timeout=10) as client,
        ):

            async def healthy() -> bool:
                try:
                    return (await client.get("/healthz")).status_code == 200
                except httpx.TransportError:
                    return False

            await wait_for(healthy, within=10)
            answers = [(await client.get("/healthz")).status_code for _ in range(6)]
            assert answers == [200] * 6

            await client.post("/v1/jobs", json={"source": "demo", "job_id": "lb-1"})
            services: Services = relay.app.state.services
            async with client.stream("GET", "/v1/jobs/demo/lb-1/events") as stream:
                first = await asyncio.wait_for(anext(stream.aiter_text()), timeout=5)
                assert ": heartbeat" in first
            long_poll = asyncio.create_task(client.get("/v1/jobs/demo/lb-1", params={"wait": 10}))
            await wait_for(lambda: services.hub.count == 1, within=5)
            body = json.dumps({"id": "lb-1", "status": "succeeded", "output": ["x.png"]}).encode()
            accepted = await client.post(
                "/hooks/demo", content=body, headers=signed_headers(DEMO_SECRET, body)
            )
            assert accepted.status_code == 200, accepted.text
            answer = await asyncio.wait_for(long_poll, timeout=5)
    assert answer.status_code == 200 and answer.json()["status"] == "succeeded"
