"""PostgreSQL for tests: a template database migrated once per test process, cloned per test
(procrastinate's way). The fixtures are registered in tests/conftest.py, so every folder can use them."""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager

import asyncpg
import pytest

from relay.store.postgres.migrations import migrate

# The server the PostgreSQL tests use; its `postgres` database is where test databases are made and dropped.
POSTGRES_URL = os.environ.get("RELAY_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/postgres")


def postgres_url(database: str) -> str:
    """The URL of `database` on the test server."""
    return f"{POSTGRES_URL.rpartition('/')[0]}/{database}"


# What connecting to a server that is not there (or will not let us in) raises; nothing a query raises.
_CONNECTION_FAILURES = (
    OSError,  # refused, unreachable, timed out
    asyncpg.PostgresConnectionError,
    asyncpg.InvalidAuthorizationSpecificationError,  # no such role, wrong password
    asyncpg.CannotConnectNowError,  # starting up or shutting down
    asyncpg.ClientCannotConnectError,
)


async def _reach() -> None:
    """Connect to the test server and hang up."""
    await (await asyncpg.connect(POSTGRES_URL)).close()


async def _admin(sql: str) -> None:
    conn = await asyncpg.connect(POSTGRES_URL)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


async def _build_template(name: str) -> None:
    await _admin(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")  # a leftover of a run that was killed
    await _admin(f"CREATE DATABASE {name}")
    conn = await asyncpg.connect(postgres_url(name))
    try:
        await migrate(conn)
    finally:
        await conn.close()


@pytest.fixture(scope="session")
def postgres_template() -> Iterator[str]:
    """A migrated template database for this test process (one per xdist worker, so none waits on another)."""
    name = f"relay_test_template_{os.environ.get('PYTEST_XDIST_WORKER', 'main')}"
    try:
        asyncio.run(_reach())
    except _CONNECTION_FAILURES as exc:
        # Only a server that cannot be reached skips; a failing migration below fails every test using it.
        message = f"NO POSTGRESQL at {POSTGRES_URL.rpartition('@')[2]} ({exc!r})"
        if os.environ.get("CI"):
            pytest.fail(f"{message}: CI must run the PostgreSQL tests")
        pytest.skip(f"{message}: PostgreSQL tests skipped")
    asyncio.run(_build_template(name))
    yield name
    asyncio.run(_admin(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))


@asynccontextmanager
async def _scratch_database(template: str | None) -> AsyncIterator[str]:
    """A new database (a copy of `template`, or empty), dropped on the way out; its URL."""
    name = f"relay_test_{uuid.uuid4().hex}"
    await _admin(f"CREATE DATABASE {name}" + (f" TEMPLATE {template}" if template else ""))
    try:
        yield postgres_url(name)
    finally:
        await _admin(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@pytest.fixture
async def postgres_database(postgres_template: str) -> AsyncIterator[str]:
    """The URL of a fresh, migrated database cloned from the template, dropped after the test."""
    async with _scratch_database(postgres_template) as url:
        yield url


@pytest.fixture
async def empty_postgres_database(postgres_template: str) -> AsyncIterator[str]:
    """The URL of a new database with no schema at all (the template fixture only checks the server is up)."""
    async with _scratch_database(None) as url:
        yield url
