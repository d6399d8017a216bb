"""PostgreSQL for tests: a template database migrated once per test process, cloned per test
(procrastinate's way), or one copy per process emptied before each test where a clone's cost (about 0.1 s)
counts. The fixtures are registered in tests/conftest.py, so every folder can use them."""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass

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
    await _admin(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")  # a killed run's, whose process ID this is
    await _admin(f"CREATE DATABASE {name}")
    conn = await asyncpg.connect(postgres_url(name))
    try:
        await migrate(conn)
    finally:
        await conn.close()


@pytest.fixture(scope="session")
def postgres_template() -> Iterator[str]:
    """A migrated template database for this test process (one per xdist worker, so none waits on another;
    named by process ID, so two test runs at once on one server never drop each other's)."""
    name = f"relay_test_template_{os.getpid()}"
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


def _create_and_drop(template: str | None) -> tuple[str, str, str]:
    """A new database's name, and the statements that make it (a copy of `template`, or empty) and drop it."""
    name = f"relay_test_{uuid.uuid4().hex}"
    create = f"CREATE DATABASE {name}" + (f" TEMPLATE {template}" if template else "")
    return name, create, f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"


@asynccontextmanager
async def _scratch_database(template: str | None) -> AsyncIterator[str]:
    """A new database (a copy of `template`, or empty), dropped on the way out; its URL."""
    name, create, drop = _create_and_drop(template)
    await _admin(create)
    try:
        yield postgres_url(name)
    finally:
        await _admin(drop)


@contextmanager
def scratch_database_blocking(template: str) -> Iterator[str]:
    """A copy of `template` for a fixture outside any event loop (one a whole module shares); its URL."""
    name, create, drop = _create_and_drop(template)
    asyncio.run(_admin(create))
    try:
        yield postgres_url(name)
    finally:
        asyncio.run(_admin(drop))


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


# The emptying statements: every table's rows (the migrations' ledger stays) and identities back to 1.
_EMPTYING_SQL = """
SELECT format('DELETE FROM %I', tablename) FROM pg_tables
 WHERE schemaname = 'public' AND tablename <> 'relay_migrations'
UNION ALL
SELECT format('ALTER TABLE %I ALTER COLUMN %I RESTART', table_name, column_name)
  FROM information_schema.columns WHERE table_schema = 'public' AND is_identity = 'YES'
"""
_OTHERS = (
    "FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()"
    " AND backend_type = 'client backend'"
)


async def _emptying_statements(url: str) -> str:
    conn = await asyncpg.connect(url)
    try:
        return "; ".join(row[0] for row in await conn.fetch(_EMPTYING_SQL))
    finally:
        await conn.close()


@dataclass(frozen=True)
class ReusedDatabase:
    """A migrated database kept for a whole test process; `emptied()` makes it as a new copy would be."""

    url: str
    emptying: str

    async def emptied(self) -> str:
        """Hang up whatever a previous test left connected (so nothing it runs writes into the next test's
        rows), delete every row and restart the identities; the URL."""
        from tests.conftest import wait_for  # here: tests/conftest.py imports this module

        conn = await asyncpg.connect(self.url)
        try:
            if await conn.fetchval(f"SELECT count(*) {_OTHERS}"):
                await conn.execute(f"SELECT pg_terminate_backend(pid) {_OTHERS}")
                await wait_for(lambda: conn.fetchval(f"SELECT count(*) = 0 {_OTHERS}"))
            await conn.execute(self.emptying)
        finally:
            await conn.close()
        return self.url


@pytest.fixture(scope="session")
def postgres_reused_database(postgres_template: str) -> Iterator[ReusedDatabase]:
    """This test process's own copy of the template, for `emptied_postgres_database`."""
    with scratch_database_blocking(postgres_template) as url:
        yield ReusedDatabase(url, asyncio.run(_emptying_statements(url)))


@pytest.fixture
async def emptied_postgres_database(postgres_reused_database: ReusedDatabase) -> str:
    """The URL of a migrated database with no rows, as `postgres_database` gives, for a fraction of its cost:
    this process's own copy of the template, emptied before the test (fine for tests that only use the
    schema, not for ones that change it)."""
    return await postgres_reused_database.emptied()


@asynccontextmanager
async def outage(url: str) -> AsyncIterator[None]:
    """The database takes no connections and has dropped those it had (a restart, a failover), until the
    block ends."""
    name = url.rpartition("/")[2]
    admin = await asyncpg.connect(url.rpartition("/")[0] + "/postgres")
    try:
        await admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false')
        await admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1", name)
        from tests.conftest import wait_for  # here: tests.conftest imports this module

        gone = "SELECT count(*) = 0 FROM pg_stat_activity WHERE datname = $1"
        await wait_for(lambda: admin.fetchval(gone, name))
        yield
    finally:
        await admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true')
        await admin.close()
