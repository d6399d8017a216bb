"""The `database` URL: backend, path and options in one string, checked before anything opens it."""

from __future__ import annotations

from pathlib import Path

import pytest

from relay.errors import ConfigError
from relay.settings import load_settings
from relay.store import open_store, parse_database_url


@pytest.mark.parametrize(
    ("url", "path", "options"),
    [
        ("sqlite:///relay.db", "relay.db", {}),
        ("sqlite:////var/lib/relay/relay.db", "/var/lib/relay/relay.db", {}),
        ("sqlite:///relay.db?synchronous=normal", "relay.db", {"synchronous": "normal"}),
        ("sqlite://", "relay.db", {}),
    ],
)
def test_urls_are_taken_apart(url: str, path: str, options: dict[str, str]) -> None:
    """The path after the third slash (a fourth makes it absolute), the options from the query."""
    parsed = parse_database_url(url)
    assert (parsed.scheme, parsed.path, dict(parsed.options)) == ("sqlite", path, options)


@pytest.mark.parametrize(
    ("url", "said"),
    [
        ("mysql://root@localhost/relay", "scheme 'mysql'"),
        ("relay.db", "without a scheme"),
        ("sqlite:///relay.db?sync=normal", "unknown option 'sync'"),
        ("sqlite:///relay.db?synchronous=off", "expected full or normal"),
    ],
)
def test_bad_urls_are_refused_saying_why(url: str, said: str) -> None:
    """A scheme relay cannot serve, an unknown option or value: a ValueError that names it."""
    with pytest.raises(ValueError) as info:
        parse_database_url(url)
    assert said in str(info.value)


def test_a_password_never_reaches_the_message() -> None:
    """A URL of a backend relay cannot serve is named by its scheme alone: the rest may hold a password."""
    with pytest.raises(ConfigError) as info:
        load_settings(
            None, environ={}, overrides={"secret_key": "k", "database": "postgres://u:hunter2@h/db"}
        )
    assert str(info.value).startswith("database:") and "hunter2" not in str(info.value)


def test_the_older_key_becomes_a_url_option() -> None:
    """`sqlite_synchronous = "normal"` is folded into the URL; a URL's own option wins."""
    folded = load_settings(None, environ={}, overrides={"secret_key": "k", "sqlite_synchronous": "normal"})
    assert folded.database == "sqlite:///relay.db?synchronous=normal"
    own = load_settings(
        None,
        environ={},
        overrides={
            "secret_key": "k",
            "sqlite_synchronous": "normal",
            "database": "sqlite:///a.db?synchronous=full",
        },
    )
    assert own.database == "sqlite:///a.db?synchronous=full"


@pytest.mark.parametrize(("query", "level"), [("", 2), ("?synchronous=normal", 1), ("?synchronous=full", 2)])
async def test_the_option_reaches_the_database(tmp_path: Path, query: str, level: int) -> None:
    """The store applies the URL's `synchronous` (FULL is 2, NORMAL 1) to the connection that commits."""
    store = await open_store(f"sqlite:///{tmp_path / 'r.db'}{query}")
    try:
        assert await store.writer.run(lambda conn: conn.execute("PRAGMA synchronous").fetchone()[0]) == level  # type: ignore[attr-defined]
    finally:
        await store.close()
