"""A provider's own API: where relay asks a job's status, and the one origin its API token may go to.

URLs relay builds itself are on that origin. A URL that comes from elsewhere (a job's metadata, a callback, a
provider's answer) is used only when it is on the same origin, exactly: scheme, host and port, and no user
info. The provider client (`origin_client`) refuses any request to another origin and follows no redirect.
"""

from __future__ import annotations

import functools
import ssl
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import httpx

from relay.jsoncodec import check_depth

__all__ = [
    "ApiOrigin",
    "OriginRefused",
    "ProviderApi",
    "answer_json",
    "api_origin",
    "host_of",
    "origin_client",
]

_DEFAULT_PORTS = {"http": 80, "https": 443}


class OriginRefused(httpx.RequestError):
    """A request to a host that is not a configured provider API; nothing was sent."""


@dataclass(frozen=True, slots=True)
class ApiOrigin:
    """Scheme, host and port: what a URL must share with a provider's API for its token to go there."""

    scheme: str
    host: str
    port: int

    def __str__(self) -> str:
        return f"{self.scheme}://{self.host}:{self.port}"


def _parse(url: object) -> httpx.URL | None:
    """`url` parsed the way httpx will send it (so check and request agree), or None."""
    if not isinstance(url, str | httpx.URL):
        return None
    try:
        return httpx.URL(url)
    except httpx.InvalidURL:
        return None


def api_origin(url: object) -> ApiOrigin | None:
    """The origin of an absolute http(s) URL; None for anything else, including a URL with user info."""
    parsed = _parse(url)
    if parsed is None or parsed.scheme not in _DEFAULT_PORTS or not parsed.raw_host:
        return None
    # User info makes a URL read as one host while it names another (`https://api.example.com@evil/`).
    if parsed.userinfo:
        return None
    host = parsed.raw_host.decode("ascii").lower()
    return ApiOrigin(parsed.scheme, host, parsed.port or _DEFAULT_PORTS[parsed.scheme])


def host_of(url: object) -> str:
    """The host a URL names, for a log line (never the whole URL: it may carry someone's credentials)."""
    parsed = _parse(url)
    if parsed is None:
        return f"<not a URL: {type(url).__name__}>"
    return parsed.raw_host.decode("ascii")[:100] or "<no host>"


class ProviderApi:
    """One source's provider API: status URLs are built on its base, and its token goes to its origin only."""

    def __init__(self, base_url: str, token: str, auth_scheme: str) -> None:
        origin = api_origin(base_url)
        if origin is None:
            raise ValueError("expected an http(s) URL without user info")
        self.base_url = base_url.rstrip("/")
        self.origin = origin
        self._headers = {"authorization": f"{auth_scheme} {token}"}

    def url(self, *segments: str) -> str:
        """The URL of `segments` under the base URL, each percent-encoded whole: an ID stays one segment."""
        return "/".join([self.base_url, *(_path_segment(segment) for segment in segments)])

    def on_api(self, url: object) -> bool:
        """True when `url` is on this API's origin: the same scheme, host and port, and no user info."""
        return api_origin(url) == self.origin

    async def get(self, client: httpx.AsyncClient, url: str) -> httpx.Response:
        """GET `url` with the API token; a URL off the API's origin raises `OriginRefused`, unrequested."""
        return await self.send(client, "GET", url)

    async def send(self, client: httpx.AsyncClient, method: str, url: str) -> httpx.Response:
        """`method` `url` (no body) with the API token; off the API's origin: `OriginRefused`, unrequested."""
        if not self.on_api(url):
            raise OriginRefused(f"{host_of(url)} is not on the provider's API ({self.origin}): not requested")
        return await client.request(method, url, headers=self._headers)

    async def get_json(self, client: httpx.AsyncClient, url: str) -> Any:
        """GET a status resource as JSON; a non-2xx answer or one nested past the bound a callback has raises
        (the sweeper takes it as no answer)."""
        response = await self.get(client, url)
        response.raise_for_status()
        return answer_json(response)


def _path_segment(text: str) -> str:
    """`text` as one path segment; `.` and `..` escaped too, which a URL would otherwise resolve away."""
    quoted = quote(text, safe="")
    return quoted.replace(".", "%2E") if quoted in (".", "..") else quoted


def answer_json(response: httpx.Response) -> Any:
    """A provider's answer as JSON, refused (`BadRequest`) past the depth a stored result may have."""
    doc = response.json()
    check_depth(doc, response.content)
    return doc


def origin_client(origins: Iterable[ApiOrigin], timeout_s: float) -> httpx.AsyncClient:
    """An HTTP client that sends requests to `origins` only, and follows no redirect."""
    allowed = frozenset(origins)

    async def refuse_foreign(request: httpx.Request) -> None:
        # Runs before each request is sent (and before each redirect hop, were one followed).
        if api_origin(request.url) not in allowed:
            raise OriginRefused(
                f"{host_of(request.url)} is not a configured provider API: not requested", request=request
            )

    return httpx.AsyncClient(
        timeout=timeout_s,
        follow_redirects=False,
        event_hooks={"request": [refuse_foreign]},
        verify=_tls_context(),
    )


@functools.cache
def _tls_context() -> ssl.SSLContext:
    """The system's CA store, loaded once per process: loading it costs tens of milliseconds of CPU."""
    return httpx.create_ssl_context()
