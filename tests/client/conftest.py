"""Fixtures of the client tests: a relay served on loopback (SQLite), clients of it, a signed callback."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import orjson
import pytest

from relay.client import AsyncClient
from tests.conftest import API_KEY, LiveRelay, make_settings, start_relay
from tests.e2e.conftest import spawn

__all__ = ["spawn"]  # the e2e fixture (`relay serve` subprocesses), for the restart test


@pytest.fixture
async def live_relay(tmp_path: Path) -> AsyncIterator[LiveRelay]:
    """A relay served by uvicorn on 127.0.0.1, subscribers on loopback allowed."""
    settings = make_settings(
        tmp_path,
        allow_private_destinations=True,
        signing_secret="whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
    )
    async with start_relay(settings) as live:
        yield live


@pytest.fixture
async def client(live_relay: LiveRelay) -> AsyncIterator[AsyncClient]:
    """An AsyncClient of the live relay, with its API key."""
    async with AsyncClient(live_relay.base_url, api_key=API_KEY) as opened:
        yield opened


def port_of(url: str) -> int:
    port = urlsplit(url).port
    assert port is not None
    return port


async def post_status(relay: LiveRelay, job_id: str, status: str, **extra: Any) -> httpx.Response:
    """A signed `demo` callback setting `job_id` to `status`; asserts relay took it."""
    response = await relay.post_callback("demo", orjson.dumps({"id": job_id, "status": status, **extra}))
    assert response.status_code == 200, response.text
    return response
