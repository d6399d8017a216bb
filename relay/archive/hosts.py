"""Which URLs in a result are files to archive: http(s) URLs on the source's `archive_hosts`."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any
from urllib.parse import urlsplit

__all__ = ["file_urls", "host_allowed"]

MAX_URL_CHARS = 8192  # a longer string is not taken for a file's URL


def _host(url: str) -> str | None:
    """The lowercased host of an http(s) URL (without a trailing dot), else None."""
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError for a port that is not a number
    except ValueError:
        return None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return None
    return parts.hostname.rstrip(".")


def _matches(host: str, pattern: str) -> bool:
    pattern = pattern.lower().rstrip(".")
    if pattern.startswith("*."):
        return host.endswith(pattern[1:])  # `*.example.com`: any subdomain, not example.com itself
    return host == pattern


def host_allowed(url: str, patterns: Iterable[str]) -> bool:
    """Whether `url` is http(s) on a host `patterns` names: exact names, or `*.` for any subdomain (ports
    ignored, case-insensitive). `replicate.delivery` and `*.replicate.delivery` together cover both."""
    host = _host(url)
    return host is not None and any(_matches(host, pattern) for pattern in patterns)


def _escape(token: str) -> str:
    """An object key as an RFC 6901 reference token: `~` as `~0`, then `/` as `~1`."""
    return token.replace("~", "~0").replace("/", "~1")


def _strings(value: Any) -> Iterator[tuple[str, str]]:
    """(pointer, string) for every string in `value`, in document order; a stack, not recursion, as a
    result may nest deeper than Python's recursion limit."""
    stack: list[tuple[str, Any]] = [("", value)]
    while stack:
        pointer, item = stack.pop()
        if isinstance(item, str):
            yield pointer, item
        elif isinstance(item, dict):
            stack.extend((f"{pointer}/{_escape(str(key))}", child) for key, child in reversed(item.items()))
        elif isinstance(item, list):
            stack.extend((f"{pointer}/{index}", child) for index, child in reversed(list(enumerate(item))))


def _looks_like_url(text: str) -> bool:
    """The whole string is one URL: no spaces or control characters around or inside it."""
    return len(text) <= MAX_URL_CHARS and text.isprintable() and not any(c.isspace() for c in text)


def file_urls(result: Any, patterns: Iterable[str]) -> list[tuple[str, str]]:
    """(RFC 6901 pointer, URL) for every string in the JSON value `result` that is an http(s) URL on a host
    `patterns` allows, in document order; `""` points at `result` itself."""
    allowed = tuple(patterns)
    return [
        (pointer, text)
        for pointer, text in _strings(result)
        if _looks_like_url(text) and host_allowed(text, allowed)
    ]
