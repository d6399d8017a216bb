"""The destination guard: subscriber URLs may not point relay at loopback, private or metadata addresses.

Checked twice: when a URL is subscribed (every address its host resolves to), and on every connection the
deliverer opens (`guarded_transport`), where the host is resolved once, each address checked, and the checked
address itself dialled, so a name that re-resolves to 127.0.0.1 after the first check (DNS rebinding) is
still refused.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import Any
from urllib.parse import urlsplit

import httpcore
import httpx

from relay.errors import BadRequest

__all__ = [
    "DestinationBlocked",
    "Resolver",
    "blocked_reason",
    "check_url",
    "guarded_transport",
    "system_resolver",
]

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
# host, port -> the addresses it resolves to
Resolver = Callable[[str, int], Awaitable[list[str]]]

# First match names the reason, so the metadata services come before the ranges holding them.
_METADATA = [
    ("169.254.169.254/32", "cloud metadata"),  # AWS, GCP, Azure, OpenStack, DigitalOcean
    ("fd00:ec2::254/128", "cloud metadata"),  # AWS over IPv6
    ("100.100.100.200/32", "cloud metadata"),  # Alibaba Cloud
    ("192.0.0.192/32", "cloud metadata"),  # Oracle Cloud
    ("168.63.129.16/32", "cloud metadata"),  # Azure's platform endpoint, a public-looking address
]
_V4 = [
    ("0.0.0.0/8", "unspecified"),
    ("10.0.0.0/8", "private"),
    ("100.64.0.0/10", "CGNAT"),
    ("127.0.0.0/8", "loopback"),
    ("169.254.0.0/16", "link-local"),
    ("172.16.0.0/12", "private"),
    ("192.0.0.0/24", "reserved"),  # IETF protocol assignments
    ("192.0.2.0/24", "reserved"),
    ("192.88.99.0/24", "reserved"),
    ("192.168.0.0/16", "private"),
    ("198.18.0.0/15", "reserved"),
    ("198.51.100.0/24", "reserved"),
    ("203.0.113.0/24", "reserved"),
    ("224.0.0.0/4", "multicast"),
    ("240.0.0.0/4", "reserved"),  # includes 255.255.255.255
]
_V6 = [
    ("::/128", "unspecified"),
    ("::1/128", "loopback"),
    ("100::/64", "reserved"),
    ("2001::/23", "reserved"),  # IETF protocol assignments
    ("2001:db8::/32", "reserved"),
    ("fc00::/7", "private"),
    ("fe80::/10", "link-local"),
    ("fec0::/10", "reserved"),
    ("ff00::/8", "multicast"),
]
_NETWORKS = [(ipaddress.ip_network(net), reason) for net, reason in (*_METADATA, *_V4, *_V6)]
_NAT64 = (ipaddress.ip_network("64:ff9b::/96"), ipaddress.ip_network("64:ff9b:1::/48"))
# IPv4-compatible IPv6 (`::a.b.c.d`), deprecated by RFC 4291 2.5.5.1; `::` and `::1` are judged as themselves.
_V4_COMPATIBLE = ipaddress.ip_network("::/96")


class DestinationBlocked(httpcore.ConnectError):
    """A connection refused by the guard (httpx raises it as the cause of an `httpx.ConnectError`)."""


def blocked_reason(address: str | IPAddress) -> str | None:
    """Why relay may not connect to `address` ("loopback", "private", ...), or None when it is public.

    An IPv6 address that carries an IPv4 address is judged by that address; the deprecated IPv4-compatible
    form (`::8.8.8.8`) is "reserved" even when that address is public, as no public host is reached at it.
    """
    ip = ipaddress.ip_address(address) if isinstance(address, str) else address
    if isinstance(ip, ipaddress.IPv6Address) and (embedded := _embedded_ipv4(ip)) is not None:
        reason = blocked_reason(embedded)
        return reason if reason is not None or ip not in _V4_COMPATIBLE else "reserved"
    for network, reason in _NETWORKS:
        if ip.version == network.version and ip in network:
            return reason
    if not ip.is_global:  # anything else the IANA registries do not call globally reachable
        return "reserved"
    return None


def _embedded_ipv4(ip: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 form reaches: IPv4-mapped, 6to4, Teredo, NAT64 or IPv4-compatible."""
    embedded = ip.ipv4_mapped or ip.sixtofour or (ip.teredo[1] if ip.teredo else None)
    if embedded is None and (any(ip in net for net in _NAT64) or (ip in _V4_COMPATIBLE and int(ip) > 1)):
        embedded = ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return embedded


async def system_resolver(host: str, port: int) -> list[str]:
    """Every address the system resolver gives for `host` (IPv4 and IPv6), in its order."""
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


def _parts(url: str) -> tuple[str, int]:
    """Host and port of an http(s) URL, or a 400 naming what is wrong."""
    try:
        parsed = urlsplit(url)
        port = parsed.port
    except ValueError:
        raise BadRequest(f"{url!r} is not a valid URL", "bad_url") from None
    if parsed.scheme not in ("http", "https"):
        raise BadRequest(f"{url!r}: only http and https URLs can subscribe", "bad_url")
    if not parsed.hostname:
        raise BadRequest(f"{url!r} has no host", "bad_url")
    return parsed.hostname, port or (443 if parsed.scheme == "https" else 80)


async def check_url(
    url: str, *, allow_private: bool, resolve: Resolver = system_resolver, timeout_s: float = 5.0
) -> None:
    """Refuse (400) a URL that is not http(s), or whose host resolves to any non-public address."""
    if len(url) > 2048:
        raise BadRequest("a subscriber URL may be at most 2048 characters", "bad_url")
    if any(c.isspace() or not c.isprintable() for c in url):  # escapes go percent-encoded in a URL
        raise BadRequest(f"{url!r} holds spaces or control characters", "bad_url")
    host, port = _parts(url)
    if allow_private:
        return
    try:
        async with asyncio.timeout(timeout_s):
            addresses = await resolve(host, port)
    except TimeoutError:
        raise BadRequest(
            f"{url!r}: {host!r} did not resolve within {timeout_s:g} s", "unresolvable_host"
        ) from None
    except (OSError, UnicodeError) as exc:  # UnicodeError: a name IDNA refuses (an empty or long label)
        raise BadRequest(
            f"{url!r}: the host {host!r} does not resolve ({exc})", "unresolvable_host"
        ) from None
    if not addresses:
        raise BadRequest(f"{url!r}: the host {host!r} does not resolve", "unresolvable_host")
    for address in addresses:
        reason = blocked_reason(address)
        if reason is not None:
            raise BadRequest(
                f"{url!r}: {host} resolves to {address} ({reason}); relay does not deliver to loopback, "
                "private, link-local or metadata addresses unless allow_private_destinations = true",
                "private_destination",
            )


class _GuardedBackend(httpcore.AsyncNetworkBackend):
    """Resolves the host itself, checks every address, and dials only checked addresses."""

    def __init__(self, resolve: Resolver, check: Callable[[str], str | None]) -> None:
        self._inner = httpcore.AnyIOBackend()
        self._resolve = resolve
        self._check = check

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,  # noqa: ASYNC109 (httpcore's interface)
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        deadline = None if timeout is None else time.monotonic() + timeout
        try:
            async with asyncio.timeout(timeout):
                addresses = await self._resolve(host, port)
        except TimeoutError:
            raise httpcore.ConnectTimeout(f"resolving {host} timed out") from None
        except (OSError, UnicodeError) as exc:
            raise httpcore.ConnectError(f"resolving {host} failed: {exc}") from None
        if not addresses:
            raise httpcore.ConnectError(f"{host} resolves to no address")
        for address in addresses:
            reason = self._check(address)
            if reason is not None:
                raise DestinationBlocked(f"{host} resolves to {address} ({reason}): destination refused")
        return await self._dial(addresses, port, deadline, local_address, socket_options)

    async def _dial(
        self,
        addresses: Sequence[str],
        port: int,
        deadline: float | None,
        local_address: str | None,
        socket_options: Iterable[Any] | None,
    ) -> httpcore.AsyncNetworkStream:
        """Connect to the first checked address that answers, within the one connect timeout."""
        error: Exception | None = None
        for address in addresses:
            remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
            try:
                return await self._inner.connect_tcp(
                    address, port, remaining, local_address=local_address, socket_options=socket_options
                )
            except httpcore.ConnectTimeout:
                raise
            except httpcore.ConnectError as exc:
                error = exc
        assert error is not None
        raise error

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,  # noqa: ASYNC109
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        raise DestinationBlocked("unix sockets are not a delivery destination")

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


def guarded_transport(
    limits: httpx.Limits,
    *,
    allow_private: bool,
    resolve: Resolver = system_resolver,
    check: Callable[[str], str | None] = blocked_reason,
) -> httpx.AsyncHTTPTransport:
    """An httpx transport (no proxies from the environment) whose connections pass the guard.

    With `allow_private` it is a plain transport: the operator said private destinations are fine.
    """
    transport = httpx.AsyncHTTPTransport(limits=limits, trust_env=False)
    if allow_private:
        return transport
    # httpx builds its connection pool without a way to pass a network backend; this pool is the same one
    # (the arguments AsyncHTTPTransport passes for a transport without proxy) with the guard as its backend.
    transport._pool = httpcore.AsyncConnectionPool(
        ssl_context=httpx.create_ssl_context(trust_env=False),
        max_connections=limits.max_connections,
        max_keepalive_connections=limits.max_keepalive_connections,
        keepalive_expiry=limits.keepalive_expiry,
        network_backend=_GuardedBackend(resolve, check),
    )
    return transport
