"""The store contract suite runs against every backend through the `store` fixture: SQLite on a temp file,
and PostgreSQL on a database cloned per test from the template (tests/postgres.py).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

from relay.store import Store, open_store


@asynccontextmanager
async def _opened(url: str) -> AsyncIterator[Store]:
    """The store at `url`, closed on the way out."""
    opened = await open_store(url)
    try:
        yield opened
    finally:
        await opened.close()


@pytest.fixture
async def sqlite_store(tmp_path: Path) -> AsyncIterator[Store]:
    """An empty SQLite store on a temp file."""
    async with _opened(f"sqlite:///{tmp_path / 'store.db'}") as opened:
        yield opened


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The URL of an empty database of each backend (a plain fixture: it sets up async ones by name)."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'store.db'}"
    url: str = request.getfixturevalue("postgres_database")
    return url


@pytest.fixture
async def store(store_url: str) -> AsyncIterator[Store]:
    """An empty store of each backend."""
    async with _opened(store_url) as opened:
        yield opened
