"""The `database` setting: a URL whose scheme picks the backend and whose query holds its options."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import parse_qsl

__all__ = ["DatabaseUrl", "parse_database_url", "redacted_url"]


@dataclass(frozen=True, slots=True)
class DatabaseUrl:
    """A `database` URL taken apart: which backend, where, and its options (the URL's query)."""

    scheme: str
    path: str
    options: Mapping[str, str]


# Per backend, each option and the values it takes (None: a positive integer).
_OPTIONS: Mapping[str, Mapping[str, frozenset[str] | None]] = {
    "sqlite": {"synchronous": frozenset({"full", "normal"})},
    "postgresql": {"pool_min": None, "pool_max": None, "listen": frozenset({"on", "off"})},
}
_ALIASES = {"postgres": "postgresql"}
_FORMS = (
    "sqlite:///relay.db, sqlite:////var/lib/relay/relay.db, sqlite:///relay.db?synchronous=normal,"
    " postgresql://user@host:5432/relay?pool_min=1&pool_max=10 (add &listen=off behind PgBouncer in"
    " transaction mode)"
)


def redacted_url(url: str) -> str:
    """`url` with the password of its user part, if any, replaced: errors and logs show this form only."""
    scheme, sep, rest = url.partition("://")
    userinfo, at, host = rest.rpartition("@")
    if not at or ":" not in userinfo:
        return url
    return f"{scheme}{sep}{userinfo.partition(':')[0]}:***@{host}"


def _valid(value: str, allowed: frozenset[str] | None) -> bool:
    if allowed is None:
        return value.isdigit() and int(value) > 0
    return value in allowed


def parse_database_url(url: str) -> DatabaseUrl:
    """`url` taken apart; a ValueError says what is wrong and which forms work (never with a password)."""
    scheme, sep, rest = url.partition("://")
    scheme = _ALIASES.get(scheme, scheme)
    if not sep or scheme not in _OPTIONS:
        # The scheme alone: the rest of a URL may hold a password.
        what = f"scheme {scheme!r}" if sep else "URL without a scheme"
        raise ValueError(f"unsupported database {what}: use {_FORMS}")
    location, _, query = rest.partition("?")
    if scheme == "postgresql":
        # The connection string as asyncpg takes it, without relay's own options.
        path = f"postgresql://{location}"
    else:
        # sqlite:///relay.db is relative, sqlite:////var/relay.db absolute: the third slash ends the host.
        path = location.removeprefix("/") or "relay.db"
    options: dict[str, str] = {}
    known = _OPTIONS[scheme]
    shown = redacted_url(url)
    for name, value in parse_qsl(query, keep_blank_values=True):
        if name not in known:
            raise ValueError(f"unknown option {name!r} in database URL {shown!r} (known: {', '.join(known)})")
        allowed = known[name]
        if not _valid(value, allowed):
            expected = "a positive integer" if allowed is None else " or ".join(sorted(allowed))
            raise ValueError(f"{name}={value!r} in database URL {shown!r}: expected {expected}")
        options[name] = value
    return DatabaseUrl(scheme, path, options)
