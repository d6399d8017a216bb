"""`webhook_url(source)`: the URL to hand a source's provider, the one relay builds for it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from relay.client import AsyncClient, NotFound
from tests.conftest import API_KEY, DEMO_SECRET, LiveRelay, make_settings, start_relay

PUBLIC_URL = "https://relay.example.com"


@pytest.fixture
async def relay(tmp_path: Path) -> AsyncIterator[LiveRelay]:
    """A relay with a signed kind (`demo`) and one that signs nothing (`runpod`: a token in its URL)."""
    sources = {"demo": {"kind": "standard-webhooks", "secret": DEMO_SECRET}, "runpod": {"kind": "runpod"}}
    async with start_relay(make_settings(tmp_path, public_url=PUBLIC_URL, sources=sources)) as live:
        yield live


async def test_webhook_url_is_the_sources_url_with_its_token_where_needed(relay: LiveRelay) -> None:
    async with AsyncClient(relay.base_url, api_key=API_KEY) as client:
        assert await client.webhook_url("demo") == f"{PUBLIC_URL}/hooks/demo"
        runpod = await client.webhook_url("runpod")
        assert runpod == relay.services.webhook_url("runpod")
        assert runpod.startswith(f"{PUBLIC_URL}/hooks/runpod/") and len(runpod) > len(
            f"{PUBLIC_URL}/hooks/runpod/"
        )
        with pytest.raises(NotFound) as refused:
            await client.webhook_url("nope")
        assert refused.value.code == "unknown_source"
