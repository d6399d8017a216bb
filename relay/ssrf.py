"""The destination guard: subscriber URLs may not point relay at loopback, private or metadata addresses.

Checked twice: when a URL is subscribed (every address its host resolves to), and on every connection the
deliverer opens (`guarded_connector`): the host is resolved once by a resolver that refuses the name when any
address is not allowed, and the socket for each address dialled is opened only after that very address passed
the check, so a literal IP in the URL, an IPv6 spelling of an IPv4 address, or a name that re-resolves to
127.0.0.1 after the first check (DNS rebinding) is still refused.
"""

from __future__ import annotations

import asyncio
import errno
import ipaddress
import socket
import ssl
from collections.abc import Awaitable, Callable
from urllib.parse import urlsplit

import aiohttp
import certifi
from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.connector import AddrInfoType, SocketFactoryType

from relay.errors import BadRequest

__all__ = [
    "DestinationBlocked",
    "GuardedResolver",
    "Resolver",
    "blocked_reason",
    "check_url",
    "guarded_connector",
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


class DestinationBlocked(OSError):
    """A connection refused by the guard (aiohttp raises it as the `os_error` of a `ClientConnectorError`)."""

    def __init__(self, message: str) -> None:
        super().__init__(errno.EACCES, message)  # aiohttp shows an OSError's strerror in its own message

    def __str__(self) -> str:
        return str(self.strerror)


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


def _dial_check(address: str, check: Callable[[str], str | None]) -> str | None:
    """`check` for an address about to be dialled; one that does not parse is refused (fail closed)."""
    try:
        return check(address)
    except ValueError:
        return "not an IP address"


class GuardedResolver(AbstractResolver):
    """aiohttp's resolver for deliveries: resolves with `resolve`, and refuses the name (every address of it)
    when any address it resolves to is not allowed, so a connection never falls back to a refused one."""

    def __init__(
        self, resolve: Resolver = system_resolver, check: Callable[[str], str | None] = blocked_reason
    ) -> None:
        self._resolve = resolve
        self._check = check

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        try:
            addresses = await self._resolve(host, port)
        except (OSError, UnicodeError) as exc:  # UnicodeError: a name IDNA refuses
            raise socket.gaierror(socket.EAI_NONAME, f"resolving {host} failed: {exc}") from None
        if not addresses:
            raise socket.gaierror(socket.EAI_NONAME, f"{host} resolves to no address")
        for address in addresses:
            reason = _dial_check(address, self._check)
            if reason is not None:
                raise DestinationBlocked(f"{host} resolves to {address} ({reason})")
        return [
            ResolveResult(
                hostname=host,
                host=address,
                port=port,
                family=socket.AF_INET6 if ":" in address else socket.AF_INET,
                proto=0,
                flags=socket.AI_NUMERICHOST,
            )
            for address in addresses
        ]

    async def close(self) -> None:
        return None


def _guarded_socket(check: Callable[[str], str | None]) -> SocketFactoryType:
    """A socket factory for aiohttp that refuses to open a socket for an address that is not allowed. It sees
    every address dialled, including IP literals in the URL, which aiohttp does not pass to the resolver."""

    def open_socket(addr_info: AddrInfoType) -> socket.socket:
        family, kind, proto, _, address = addr_info
        reason = _dial_check(str(address[0]), check)
        if reason is not None:
            raise DestinationBlocked(f"{address[0]} ({reason})")
        return socket.socket(family, kind, proto)

    return open_socket


def guarded_connector(
    limit: int,
    *,
    allow_private: bool,
    keepalive_s: float,
    resolve: Resolver = system_resolver,
    check: Callable[[str], str | None] = blocked_reason,
) -> aiohttp.TCPConnector:
    """An aiohttp connector of at most `limit` connections whose every dial passes the guard.

    With `allow_private` it is a plain connector: the operator said private destinations are fine.
    """
    # Certificates are checked against certifi's roots, as httpx did: a slim image may have no system store.
    tls = ssl.create_default_context(cafile=certifi.where())
    if allow_private:
        return aiohttp.TCPConnector(limit=limit, keepalive_timeout=keepalive_s, ssl=tls)
    return aiohttp.TCPConnector(
        limit=limit,
        keepalive_timeout=keepalive_s,
        ssl=tls,
        resolver=GuardedResolver(resolve, check),
        socket_factory=_guarded_socket(check),
    )
