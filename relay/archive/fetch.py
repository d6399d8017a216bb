"""Copy one file from its origin into a blob store: streamed, hashed on the way, bounded, guarded.

Every connection goes through the deliveries' destination guard (`relay.ssrf.guarded_connector`: the address
dialled is checked), and redirects are followed here, one hop at a time, only to hosts the source's
`archive_hosts` allow, so a file URL cannot bounce relay to another host or into the private network.
"""

from __future__ import annotations

import asyncio
import hashlib
import mimetypes
import re
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from urllib.parse import urljoin, urlsplit

import aiohttp

from relay import __version__
from relay.archive.blobs import BlobStore
from relay.archive.hosts import host_allowed
from relay.ssrf import DestinationBlocked, blocked_reason, guarded_connector

__all__ = [
    "BadStatus",
    "FetchError",
    "FetchTimeout",
    "FetchedFile",
    "FileTooLarge",
    "HostRefused",
    "archive_session",
    "fetch_to_store",
]

MAX_REDIRECTS = 5
READ_BYTES = 256 * 1024  # what one read from the response may take; aiohttp buffers about this much
KEEPALIVE_S = 15.0  # an origin often serves several files of one result
USER_AGENT = f"relay-archive/{__version__}"
_REDIRECTS = frozenset((301, 302, 303, 307, 308))
_RETRYABLE_STATUSES = frozenset((408, 425, 429))  # and every 5xx
# `type/subtype` and parameters, as RFC 9110 spells a media type; anything else is not trusted.
_MEDIA_TYPE = re.compile(r"[\w!#$&^.+-]+/[\w!#$&^.+-]+(\s*;\s*[\w!#$&^.+-]+=(\"[^\"\\]*\"|[\w!#$&^.+-]+))*")
_FALLBACK_TYPE = "application/octet-stream"


class FetchError(Exception):
    """A file that was not archived. `str()` is fit for the file's `error`; `retryable` says whether a later
    attempt may succeed (a 5xx, a timeout, a dropped connection) or not (too large, refused, a 404)."""

    def __init__(self, message: str, *, retryable: bool) -> None:
        super().__init__(message)
        self.retryable = retryable


class FileTooLarge(FetchError):
    def __init__(self, max_bytes: int, declared: int | None = None) -> None:
        size = f"is {declared} bytes" if declared is not None else "sent more"
        super().__init__(f"the file {size}, over max_file_bytes ({max_bytes})", retryable=False)


class HostRefused(FetchError):
    """The URL, or a redirect, names a host outside `archive_hosts`, or an address the guard refuses."""

    def __init__(self, message: str) -> None:
        super().__init__(message, retryable=False)


class BadStatus(FetchError):
    def __init__(self, status: int, host: str) -> None:
        retryable = status >= 500 or status in _RETRYABLE_STATUSES
        super().__init__(f"{host} answered {status}", retryable=retryable)
        self.status = status


class FetchTimeout(FetchError):
    def __init__(self, message: str) -> None:
        super().__init__(message, retryable=True)


@dataclass(frozen=True, slots=True)
class FetchedFile:
    """A file stored whole: its size, its sha256 (hex) and its content type."""

    bytes: int
    sha256: str
    content_type: str


def archive_session(
    *,
    allow_private: bool,
    limit: int = 64,
    connect_timeout_s: float = 10.0,
    check: Callable[[str], str | None] = blocked_reason,
) -> aiohttp.ClientSession:
    """The client archiving shares: pooled, no proxies or cookies, every dial through the guard."""
    return aiohttp.ClientSession(
        connector=guarded_connector(limit, allow_private=allow_private, keepalive_s=KEEPALIVE_S, check=check),
        # Each file's whole fetch is bounded by fetch_to_store; aiohttp bounds only the connection.
        timeout=aiohttp.ClientTimeout(total=None, connect=connect_timeout_s),
        headers={"user-agent": USER_AGENT},
        trust_env=False,
        cookie_jar=aiohttp.DummyCookieJar(),  # one origin's cookies must not go to another
        read_bufsize=READ_BYTES,
    )


async def fetch_to_store(
    session: aiohttp.ClientSession,
    url: str,
    store: BlobStore,
    key: str,
    *,
    max_bytes: int,
    timeout_s: float,
    allowed_hosts: Iterable[str],
) -> FetchedFile:
    """GET `url` (following redirects on allowed hosts) into `store` under `key`, in constant memory.

    Raises a FetchError; nothing is left under `key` then. Errors of the store itself come out as they are."""
    hosts = tuple(allowed_hosts)
    try:
        async with asyncio.timeout(timeout_s):
            async with _get(session, url, hosts) as response:
                host = response.url.host or "the origin"
                if not 200 <= response.status < 300 or response.status == 206:
                    raise BadStatus(response.status, host)
                declared = response.content_length
                if declared is not None and declared > max_bytes:
                    raise FileTooLarge(max_bytes, declared)
                content_type = _content_type(response.headers.get("Content-Type"), url, str(response.url))
                body = _Body(max_bytes)
                await store.put_stream(key, body.read(response.content), content_type)
                return FetchedFile(body.size, body.digest.hexdigest(), content_type)
    except FetchError:
        raise
    except aiohttp.ClientConnectorError as exc:
        if isinstance(exc.os_error, DestinationBlocked):
            raise HostRefused(f"destination refused: {exc.os_error}") from None
        raise FetchError(f"connection failed: {exc}", retryable=True) from None
    except TimeoutError as exc:
        if isinstance(exc, aiohttp.ClientError):  # aiohttp's connect timeout
            raise FetchTimeout(f"connecting timed out: {exc}") from None
        raise FetchTimeout(f"the download did not finish within {timeout_s:g} s") from None
    except aiohttp.ClientError as exc:
        raise FetchError(_described(exc), retryable=True) from None


@asynccontextmanager
async def _get(
    session: aiohttp.ClientSession, url: str, hosts: tuple[str, ...]
) -> AsyncIterator[aiohttp.ClientResponse]:
    """The response at the end of `url`'s redirects, each hop's host checked before it is asked."""
    for _ in range(MAX_REDIRECTS + 1):
        if not host_allowed(url, hosts):
            raise HostRefused(f"{_host(url)} is not an archive host of this source")
        # identity: the file's own bytes, so the size counted is the size stored
        response = await session.get(url, allow_redirects=False, headers={"Accept-Encoding": "identity"})
        location = response.headers.get("Location")
        if response.status in _REDIRECTS and location:
            response.release()
            url = urljoin(str(response.url), location)
            continue
        try:
            yield response
        finally:
            response.release()
        return
    raise FetchError(f"more than {MAX_REDIRECTS} redirects", retryable=False)


class _Body:
    """A response body as it is streamed to the store: counted against `max_bytes` and hashed."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self.size = 0
        self.digest = hashlib.sha256()

    async def read(self, content: aiohttp.StreamReader) -> AsyncGenerator[bytes, None]:
        try:
            async for chunk in content.iter_chunked(READ_BYTES):
                self.size += len(chunk)
                if self.size > self.max_bytes:
                    raise FileTooLarge(self.max_bytes)
                self.digest.update(chunk)
                yield chunk
        except aiohttp.ClientError as exc:  # raised here, it would read as the store's failure
            raise FetchError(f"the download broke off: {_described(exc)}", retryable=True) from None


def _described(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


def _host(url: str) -> str:
    try:
        return urlsplit(url).hostname or repr(url[:100])
    except ValueError:
        return repr(url[:100])


def _content_type(header: str | None, *urls: str) -> str:
    """The response's Content-Type when it is a well-formed media type, else a guess from the URLs' file
    extensions (the one in the result first), else application/octet-stream."""
    if header is not None and len(header) <= 200 and _MEDIA_TYPE.fullmatch(header.strip()):
        return header.strip()
    for url in urls:
        guessed, _ = mimetypes.guess_type(urlsplit(url).path, strict=False)
        if guessed is not None:
            return guessed
    return _FALLBACK_TYPE
