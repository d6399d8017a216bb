"""Shared fixtures: settings on a temp SQLite file, a relay in-process (`open_relay`) or served by uvicorn on
127.0.0.1 (`start_relay`), signing with the oracle."""

from __future__ import annotations

import asyncio
import socket
import ssl
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from standardwebhooks import Webhook
from starlette.applications import Starlette

from relay.app import create_app
from relay.server import RelayServer
from relay.services import Services
from relay.settings import Settings, load_settings
from tests.postgres import (
    emptied_postgres_database,
    empty_postgres_database,
    postgres_database,
    postgres_reused_database,
    postgres_template,
)

API_KEY = "test-api-key"
DEMO_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
REPLICATE_SECRET = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD"

# Fixtures defined in tests/postgres.py, registered here for every folder.
__all__ = [
    "emptied_postgres_database",
    "empty_postgres_database",
    "postgres_database",
    "postgres_reused_database",
    "postgres_template",
]


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "sqlite_only(why): runs on the SQLite backend only (tests/integration runs the rest on each backend)",
    )


def make_settings(tmp_path: Path, **overrides: Any) -> Settings:
    """Settings for a test: SQLite in tmp_path, one API key, a `demo` and a `replicate` source."""
    raw: dict[str, Any] = {
        "database": f"sqlite:///{tmp_path / 'relay.db'}",
        "secret_key": "test-secret-key",
        "api_keys": [API_KEY],
        "sources": {
            "demo": {"kind": "standard-webhooks", "secret": DEMO_SECRET},
            "replicate": {"kind": "replicate", "secret": REPLICATE_SECRET},
        },
    }
    raw.update(overrides)
    return load_settings(None, environ={}, overrides=raw)


def signed_headers(
    secret: str, body: bytes, msg_id: str | None = None, timestamp: float | None = None
) -> dict[str, str]:
    """Standard Webhooks headers made by the `standardwebhooks` package (an independent signer)."""
    msg_id = msg_id or f"msg_{uuid.uuid4().hex}"
    ts = int(time.time() if timestamp is None else timestamp)
    signature = Webhook(secret).sign(msg_id, datetime.fromtimestamp(ts, UTC), body.decode())
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(ts),
        "webhook-signature": signature,
        "content-type": "application/json",
    }


async def wait_for(condition: Callable[[], Awaitable[bool] | bool], within: float = 5.0) -> None:
    """Wait until `condition()` holds, checking often; fail after `within` seconds."""
    deadline = time.monotonic() + within
    while True:
        result = condition()
        if not isinstance(result, bool):
            result = await result
        if result:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {within} s")
        await asyncio.sleep(0.005)


@dataclass
class Relay:
    """A relay app with its lifespan running (store, services, loops), and a client holding the API key."""

    settings: Settings
    app: Starlette
    client: httpx.AsyncClient

    @property
    def services(self) -> Services:
        return self.app.state.services  # type: ignore[no-any-return]

    def anonymous(self) -> httpx.AsyncClient:
        """A client of this relay without the API key (use it in `async with`)."""
        return httpx.AsyncClient(transport=httpx.ASGITransport(app=self.app), base_url=_IN_PROCESS_URL)

    async def post_callback(
        self, source: str, payload: bytes, secret: str = DEMO_SECRET, **kwargs: Any
    ) -> httpx.Response:
        return await self.client.post(
            f"/hooks/{source}", content=payload, headers=signed_headers(secret, payload, **kwargs)
        )

    async def healthy(self) -> bool:
        """Whether /healthz answers 200."""
        return (await self.client.get("/healthz")).status_code == 200


@dataclass
class LiveRelay(Relay):
    """A relay served by uvicorn on a free loopback port, in the test's event loop."""

    base_url: str
    server: RelayServer

    def anonymous(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(base_url=self.base_url, verify=_LOOPBACK_TLS)


# The relays under test speak plain HTTP; one TLS context serves every test client (httpx would otherwise load
# the CA bundle again for each, about 20 ms of CPU).
_LOOPBACK_TLS = ssl.create_default_context()
_IN_PROCESS_URL = "http://relay.test"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Clock:
    """A settable clock for the app and the loops' `run_once(now)`."""

    def __init__(self, now: float | None = None) -> None:
        self.now = time.time() if now is None else now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> float:
        self.now += seconds
        return self.now


def _api_client(**options: Any) -> httpx.AsyncClient:
    return httpx.AsyncClient(headers={"authorization": f"Bearer {API_KEY}"}, timeout=30, **options)


@asynccontextmanager
async def open_relay(
    settings: Settings, clock: Callable[[], float] = time.time, background: bool = True
) -> AsyncIterator[Relay]:
    """`create_app(settings)` with its lifespan running (loops stopped unless `background`), reached
    in-process through `httpx.ASGITransport`: the whole app, store and loops, without a server or a socket.

    A response reaches the client whole, once the app has sent all of it: a test that reads a stream while it
    is open, hangs up early, sends raw bytes or gives another program the relay's URL uses `start_relay`.
    """
    app = create_app(settings, clock=clock, background=background)
    async with (
        app.router.lifespan_context(app),
        _api_client(transport=httpx.ASGITransport(app=app), base_url=_IN_PROCESS_URL) as client,
    ):
        yield Relay(settings, app, client)


@asynccontextmanager
async def start_relay(
    settings: Settings,
    clock: Callable[[], float] = time.time,
    background: bool = True,
    http: type[asyncio.Protocol] | None = None,
    port: int | None = None,
) -> AsyncIterator[LiveRelay]:
    """Serve `create_app(settings)` on 127.0.0.1 until the block ends (loops stopped unless `background`);
    `http` replaces uvicorn's HTTP protocol (relay/http_protocol.py), as `relay serve` does. `port` (default:
    a free one) lets settings name the relay's own URL (`public_url`) before it starts."""
    port = port or free_port()
    app = create_app(settings, clock=clock, background=background)
    config = uvicorn.Config(
        app,
        host="127.0.0.1",
        port=port,
        log_level="warning",
        lifespan="on",
        timeout_graceful_shutdown=1,
        http=http or "auto",
    )
    server = RelayServer(config, app)
    task = asyncio.create_task(server.serve())
    await wait_for(lambda: server.started or task.done(), within=10)
    if task.done():
        task.result()
        raise RuntimeError("relay did not start")
    base_url = f"http://127.0.0.1:{port}"
    async with _api_client(base_url=base_url, verify=_LOOPBACK_TLS) as client:
        try:
            yield LiveRelay(settings, app, client, base_url, server)
        finally:
            server.should_exit = True
            await task
