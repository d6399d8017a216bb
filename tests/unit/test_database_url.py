"""The `database` URL: backend, path and options in one string, checked before anything opens it."""

from __future__ import annotations

from pathlib import Path

import pytest

from relay.errors import ConfigError
from relay.settings import load_settings
from relay.store import open_store, parse_database_url, redacted_url


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
        ("postgresql://h/db?pool_max=-1", "expected a positive integer"),
        ("postgresql://h/db?sslmode=require", "unknown option 'sslmode'"),
    ],
)
def test_bad_urls_are_refused_saying_why(url: str, said: str) -> None:
    """A scheme relay cannot serve, an unknown option or value: a ValueError that names it."""
    with pytest.raises(ValueError) as info:
        parse_database_url(url)
    assert said in str(info.value)


@pytest.mark.parametrize(
    "url",
    ["mysql://u:hunter2@h/db", "postgres://u:hunter2@h/db?pool_max=0", "postgresql://u:hunter2@h/db?x=1"],
)
def test_a_password_never_reaches_the_message(url: str) -> None:
    """A refused URL is named by its scheme alone, or with its password masked."""
    with pytest.raises(ConfigError) as info:
        load_settings(None, environ={}, overrides={"secret_key": "k", "database": url})
    assert str(info.value).startswith("database:") and "hunter2" not in str(info.value)


@pytest.mark.parametrize(
    ("url", "options"),
    [
        ("postgresql://relay:pw@db.example:5432/relay", {}),
        (
            "postgres://relay:pw@db.example:5432/relay?pool_min=2&pool_max=20",
            {"pool_min": "2", "pool_max": "20"},
        ),
    ],
)
def test_postgres_urls_are_taken_apart(url: str, options: dict[str, str]) -> None:
    """Both spellings of the scheme; the connection string goes to asyncpg without relay's own options."""
    parsed = parse_database_url(url)
    assert (parsed.scheme, parsed.path, dict(parsed.options)) == (
        "postgresql",
        "postgresql://relay:pw@db.example:5432/relay",
        options,
    )


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


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("postgresql://relay:hunter2@db:5432/relay", "postgresql://relay:***@db:5432/relay"),
        ("postgresql://relay@db/relay", "postgresql://relay@db/relay"),
        ("sqlite:///relay.db", "sqlite:///relay.db"),
    ],
)
def test_urls_are_shown_without_their_password(url: str, shown: str) -> None:
    """What relay prints of a database URL (check-config, errors) masks the password and keeps the rest."""
    assert redacted_url(url) == shown
