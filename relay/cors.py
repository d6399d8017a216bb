"""Browser pages on `cors_origins`: Starlette's CORSMiddleware on a job's reads (its ticket opens them), and
the rule that an API key is refused from a page on any other origin."""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from urllib.parse import urlsplit

from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.routing import BaseRoute, Match, Route
from starlette.types import ASGIApp, Receive, Scope, Send

from relay.errors import ConfigError

__all__ = ["CORS_PATHS", "api_key_refused", "check_origins", "cors_middleware"]

# Exactly the reads a job's ticket opens: the job (long-poll included), its status stream and its history.
CORS_PATHS = (
    "/v1/jobs/{source}/{job_id}",
    "/v1/jobs/{source}/{job_id}/events",
    "/v1/jobs/{source}/{job_id}/callbacks",
)
# Request headers a page may send: a key (listed origins only), a long-poll's Prefer, EventSource's resume.
_ALLOW_HEADERS = ("Authorization", "Last-Event-ID", "Prefer")
# Response headers a page may read beyond the safelisted ones: the answer to `Prefer: wait=S`.
_EXPOSE_HEADERS = ("Preference-Applied",)
_SCHEME = re.compile(r"[a-z][a-z0-9+.-]*")
_DEFAULT_PORTS = {"http": 80, "https": 443}


def cors_middleware(origins: Sequence[str], routes: Iterable[BaseRoute]) -> list[Middleware]:
    """The app's middleware for `origins`: none at all when no origin is listed."""
    if not origins:
        return []
    chosen = [route for route in routes if isinstance(route, Route) and route.path in CORS_PATHS]
    if len(chosen) != len(CORS_PATHS):  # a renamed route would silently lose its CORS answers
        raise RuntimeError(f"CORS routes not found among the routes given: {CORS_PATHS}")
    return [Middleware(_JobReadsCORS, origins=tuple(origins), routes=chosen)]


class _JobReadsCORS:
    """Starlette's CORSMiddleware on the job reads alone (their preflights too); other requests pass as they
    came, so no other route answers a preflight or tells a page on another site it may read it."""

    def __init__(self, app: ASGIApp, origins: tuple[str, ...], routes: Sequence[Route]) -> None:
        self._app = app
        self._routes = routes
        self._cors = CORSMiddleware(
            app,
            allow_origins=origins,
            allow_methods=("GET",),
            allow_headers=_ALLOW_HEADERS,
            expose_headers=_EXPOSE_HEADERS,
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        # The routes' own matching (PARTIAL: the path matches but not the method, as a preflight's OPTIONS).
        matched = scope["type"] == "http" and any(r.matches(scope)[0] is not Match.NONE for r in self._routes)
        if matched:
            await self._cors(scope, receive, send)
        else:
            await self._app(scope, receive, send)


def api_key_refused(origin: str | None, origins: Sequence[str]) -> bool:
    """Whether a request from a browser page on `origin` (its Origin header) may not use an API key: any
    page but one on a listed origin, `null` included."""
    return origin is not None and origin not in origins


def check_origins(value: object) -> tuple[str, ...]:
    """`cors_origins` checked: each exactly as a browser sends it in Origin, and never `*`."""
    if not isinstance(value, list | tuple) or not all(isinstance(origin, str) for origin in value):
        raise ConfigError('cors_origins: expected a list of origins, e.g. ["https://app.example"]')
    for origin in value:
        if origin == "*":
            raise ConfigError(
                "cors_origins: '*' is refused: list each origin whose pages may read jobs"
                " (with '*' any site could read a job whose ticket it holds, and use an API key)"
            )
        canonical = _canonical_origin(origin)
        if canonical != origin:
            hint = f"; write {canonical!r}" if canonical else ""
            raise ConfigError(
                f"cors_origins: {origin!r} is not an origin as a browser sends it"
                f" (scheme://host[:port]: lower case, no default port, no path, no trailing slash){hint}"
            )
    return tuple(value)


def _canonical_origin(text: str) -> str | None:
    """The origin `text` names as a browser writes it, or None if it names none (a path, a user, no host)."""
    try:
        parts = urlsplit(text.strip())
        port = parts.port
        host = (parts.hostname or "").encode("idna").decode("ascii")
    except (ValueError, UnicodeError):
        return None
    scheme = parts.scheme.lower()
    if not _SCHEME.fullmatch(scheme) or not host or "@" in parts.netloc:
        return None
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        return None
    host = f"[{host}]" if ":" in host else host
    shown_port = "" if port is None or port == _DEFAULT_PORTS.get(scheme) else f":{port}"
    return f"{scheme}://{host}{shown_port}"
