"""Shared fixtures: settings on a temp SQLite file, a real relay on 127.0.0.1, signing with the oracle."""

from __future__ import annotations

import asyncio
import socket
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

from relay.app import create_app
from relay.server import RelayServer
from relay.services import Services
from relay.settings import Settings, load_settings
from tests.postgres import empty_postgres_database, postgres_database, postgres_template

API_KEY = "test-api-key"
DEMO_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
REPLICATE_SECRET = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD"

# Fixtures defined in tests/postgres.py, registered here for every folder.
__all__ = ["empty_postgres_database", "postgres_database", "postgres_template"]


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
class LiveRelay:
    """A relay served by uvicorn on a free loopback port, in the test's event loop."""

    settings: Settings
    base_url: str
    client: httpx.AsyncClient
    server: uvicorn.Server

    @property
    def services(self) -> Services:
        return self.server.config.loaded_app.app.state.services  # type: ignore[no-any-return]

    async def post_callback(
        self, source: str, payload: bytes, secret: str = DEMO_SECRET, **kwargs: Any
    ) -> httpx.Response:
        return await self.client.post(
            f"/hooks/{source}", content=payload, headers=signed_headers(secret, payload, **kwargs)
        )

    async def healthy(self) -> bool:
        """Whether /healthz answers 200."""
        return (await self.client.get("/healthz")).status_code == 200


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


@asynccontextmanager
async def start_relay(
    settings: Settings,
    clock: Callable[[], float] = time.time,
    background: bool = True,
    http: type[asyncio.Protocol] | None = None,
) -> AsyncIterator[LiveRelay]:
    """Serve `create_app(settings)` on 127.0.0.1 until the block ends (loops stopped unless `background`);
    `http` replaces uvicorn's HTTP protocol (relay/http_protocol.py), as `relay serve` does."""
    port = free_port()
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
    async with httpx.AsyncClient(
        base_url=base_url, headers={"authorization": f"Bearer {API_KEY}"}, timeout=30
    ) as client:
        try:
            yield LiveRelay(settings, base_url, client, server)
        finally:
            server.should_exit = True
            await task


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return make_settings(tmp_path)


@pytest.fixture
async def relay(settings: Settings) -> AsyncIterator[LiveRelay]:
    """A live relay with the default test settings."""
    async with start_relay(settings) as live:
        yield live
