"""Fixtures the integration tests share."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from tests.fake_provider_api import FakeProviderApi, fake_provider_api


@pytest.fixture
async def api() -> AsyncIterator[FakeProviderApi]:
    """A provider's own API, faked on a loopback port, for reconcile to ask."""
    async with fake_provider_api() as fake:
        yield fake
