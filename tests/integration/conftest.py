"""Fixtures the integration tests share.

Every test that reaches the `backend` fixture (through `database`, `settings_with`, `settings` or a relay)
runs once per backend, `test_x[sqlite]` and `test_x[postgres]`; a test marked `sqlite_only(why)` (one that
is about SQLite itself) runs on SQLite alone.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, Protocol

import pytest

from relay.settings import Settings
from tests.conftest import LiveRelay, Relay, make_settings, open_relay, start_relay
from tests.fake_provider_api import FakeProviderApi, fake_provider_api

BACKENDS = ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "backend" in metafunc.fixturenames:
        sqlite_only = metafunc.definition.get_closest_marker("sqlite_only") is not None
        metafunc.parametrize("backend", BACKENDS[:1] if sqlite_only else BACKENDS, indirect=True)


@pytest.fixture(scope="module")
def backend(request: pytest.FixtureRequest) -> str:
    """`sqlite` or `postgres` (module-scoped, so a module-scoped relay can be on either)."""
    name: str = request.param
    return name


@pytest.fixture
def database(backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> str:
    """The URL of an empty database of the test's backend: a new file in tmp_path, or a migrated PostgreSQL
    database with no rows (a plain fixture: it sets up the async one by name, only where it is needed)."""
    if backend == "sqlite":
        return f"sqlite:///{tmp_path / 'relay.db'}"
    url: str = request.getfixturevalue("emptied_postgres_database")
    return url


class SettingsWith(Protocol):
    def __call__(self, **overrides: Any) -> Settings: ...


@pytest.fixture
def settings_with(tmp_path: Path, database: str) -> SettingsWith:
    """`make_settings` on the test's database: `settings_with(max_body_bytes=1024)`."""

    def settings(**overrides: Any) -> Settings:
        return make_settings(tmp_path, **{"database": database, **overrides})

    return settings


@pytest.fixture
def settings(settings_with: SettingsWith) -> Settings:
    """The default test settings, on the test's database."""
    return settings_with()


@pytest.fixture
async def relay(settings: Settings) -> AsyncIterator[Relay]:
    """The relay with the default test settings, in-process (see `open_relay`)."""
    async with open_relay(settings) as opened:
        yield opened


@pytest.fixture
async def live_relay(settings: Settings) -> AsyncIterator[LiveRelay]:
    """The relay with the default test settings, served by uvicorn on 127.0.0.1 (see `start_relay`)."""
    async with start_relay(settings) as live:
        yield live


@pytest.fixture
async def api() -> AsyncIterator[FakeProviderApi]:
    """A provider's own API, faked on a loopback port, for reconcile to ask."""
    async with fake_provider_api() as fake:
        yield fake


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Give each test schemathesis makes per operation its own id, `test_x[GET /path]`: from pytest 9.2 on an
    item's id is built from its base name and parameters, so schemathesis' labels (in `name`) were lost."""
    for item in items:
        label = getattr(item, "operation_label", None)
        if isinstance(item, pytest.Function) and label and f"[{label}]" not in item.nodeid and item.parent:
            item._id = item.parent.id.child(item.originalname).with_params(label)
