"""The destination guard: which addresses are refused, at subscribe time and at dial time."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from relay.errors import BadRequest
from relay.ssrf import DestinationBlocked, blocked_reason, check_url, guarded_transport
from tests.subscriber import subscriber

LIMITS = httpx.Limits(max_connections=4)


@pytest.mark.parametrize(
    ("address", "reason"),
    [
        ("127.0.0.1", "loopback"),
        ("127.9.8.7", "loopback"),
        ("::1", "loopback"),
        ("10.1.2.3", "private"),
        ("172.16.0.1", "private"),
        ("192.168.1.1", "private"),
        ("fd12:3456::1", "private"),
        ("169.254.1.1", "link-local"),
        ("fe80::1", "link-local"),
        ("100.64.0.1", "CGNAT"),
        ("224.0.0.251", "multicast"),
        ("ff02::1", "multicast"),
        ("ff0e::1", "multicast"),
        ("240.0.0.1", "reserved"),
        ("255.255.255.255", "reserved"),
        ("198.18.0.1", "reserved"),
        ("2001:db8::1", "reserved"),
        ("0.0.0.0", "unspecified"),
        ("::", "unspecified"),
        ("169.254.169.254", "cloud metadata"),
        ("fd00:ec2::254", "cloud metadata"),
        ("100.100.100.200", "cloud metadata"),
        ("168.63.129.16", "cloud metadata"),
        # IPv6 spellings of IPv4 addresses are judged by the IPv4 address they reach.
        ("::ffff:127.0.0.1", "loopback"),
        ("::ffff:169.254.169.254", "cloud metadata"),
        ("64:ff9b::a00:1", "private"),
        ("2002:7f00:1::", "loopback"),
        # IPv4-compatible (`::a.b.c.d`, deprecated): its IPv4 address's reason; reserved when that is public.
        ("::127.0.0.1", "loopback"),
        ("::7f00:1", "loopback"),
        ("::10.0.0.1", "private"),
        ("::192.168.1.1", "private"),
        ("::169.254.169.254", "cloud metadata"),
        ("::100.64.0.1", "CGNAT"),
        ("::0.0.0.2", "unspecified"),
        ("::8.8.8.8", "reserved"),
    ],
)
def test_non_public_addresses_are_refused(address: str, reason: str) -> None:
    """Every class of non-public address is refused, with its reason named."""
    assert blocked_reason(address) == reason


@pytest.mark.parametrize("address", ["1.1.1.1", "93.184.216.34", "2606:4700:4700::1111", "::ffff:8.8.8.8"])
def test_public_addresses_pass(address: str) -> None:
    """Globally routable addresses, in either family, are allowed."""
    assert blocked_reason(address) is None


def _resolver(table: dict[str, list[str]]):  # type: ignore[no-untyped-def]
    async def resolve(host: str, port: int) -> list[str]:
        if host not in table:
            raise OSError(f"unknown host {host}")
        return table[host]

    return resolve


@pytest.mark.parametrize(
    "url",
    ["ftp://example.com/x", "file:///etc/passwd", "javascript:alert(1)", "http:///nohost", "example.com"],
)
async def test_only_http_urls_with_a_host_are_taken(url: str) -> None:
    """Other schemes and host-less URLs are refused even when private destinations are allowed."""
    with pytest.raises(BadRequest) as refused:
        await check_url(url, allow_private=True)
    assert refused.value.code == "bad_url"


async def test_any_private_address_among_those_resolved_refuses_the_url() -> None:
    """A host with one public and one private address is refused, and the message says which and why."""
    resolve = _resolver({"mixed.test": ["93.184.216.34", "10.0.0.7"], "public.test": ["93.184.216.34"]})
    await check_url("https://public.test/hook", allow_private=False, resolve=resolve)
    with pytest.raises(BadRequest) as refused:
        await check_url("https://mixed.test/hook", allow_private=False, resolve=resolve)
    assert refused.value.code == "private_destination"
    assert "10.0.0.7 (private)" in refused.value.message
    assert "allow_private_destinations" in refused.value.message


async def test_localhost_and_literal_addresses_are_refused() -> None:
    """Names and literals that reach this machine or the metadata service are refused (real resolver)."""
    urls = ("http://localhost:8000/", "http://127.0.0.1/", "http://[::1]:9/", "http://169.254.169.254/")
    for url in (*urls, "http://[::127.0.0.1]:9/", "http://[::ffff:127.0.0.1]:9/"):
        with pytest.raises(BadRequest, match="private_destinations"):
            await check_url(url, allow_private=False)


async def test_unresolvable_host_is_a_clear_400() -> None:
    """A host that does not resolve is refused at subscribe time rather than failing every delivery."""
    with pytest.raises(BadRequest) as refused:
        await check_url("https://nowhere.test/", allow_private=False, resolve=_resolver({}))
    assert refused.value.code == "unresolvable_host"


async def test_allow_private_skips_the_address_check() -> None:
    """With allow_private_destinations the host is not even resolved."""
    await check_url("http://127.0.0.1:9/", allow_private=True, resolve=_resolver({}))


async def test_dial_time_check_refuses_a_name_that_rebinds_to_loopback() -> None:
    """A name that resolved publicly at subscribe time but now resolves to loopback is not connected to."""
    async with subscriber() as sub:
        resolve = _resolver({"rebind.test": ["127.0.0.1"]})
        transport = guarded_transport(LIMITS, allow_private=False, resolve=resolve)
        async with httpx.AsyncClient(transport=transport) as client:
            with pytest.raises(httpx.ConnectError) as refused:
                await client.post(f"http://rebind.test:{sub.port}/hook", content=b"{}")
        assert isinstance(refused.value.__cause__, DestinationBlocked)
        assert "127.0.0.1 (loopback)" in str(refused.value)
        assert sub.connections == 0


async def test_dial_time_check_covers_literal_addresses() -> None:
    """An IP literal in the URL goes through the same check."""
    async with subscriber() as sub:
        transport = guarded_transport(LIMITS, allow_private=False)
        async with httpx.AsyncClient(transport=transport) as client:
            with pytest.raises(httpx.ConnectError):
                await client.post(sub.url, content=b"{}")
        assert sub.connections == 0


async def test_the_checked_address_is_the_one_dialled() -> None:
    """The guard connects to the address it resolved and checked, not to a second lookup of the name."""
    async with subscriber() as sub:
        resolve = _resolver({"sub.test": ["127.0.0.1"]})
        transport = guarded_transport(LIMITS, allow_private=False, resolve=resolve, check=lambda _: None)
        async with httpx.AsyncClient(transport=transport) as client:
            response = await client.post(f"http://sub.test:{sub.port}/hook", content=b"{}")
        assert response.status_code == 200
        assert sub.received[0].headers["host"] == f"sub.test:{sub.port}"


async def test_allow_private_gives_a_plain_transport() -> None:
    """With allow_private_destinations loopback subscribers are reached."""
    async with subscriber() as sub:
        transport = guarded_transport(LIMITS, allow_private=True)
        async with httpx.AsyncClient(transport=transport) as client:
            assert (await client.post(sub.url, content=b"{}")).status_code == 200


async def test_malformed_and_unresolvable_urls_are_clear_400s() -> None:
    """A bad port, an overlong URL, a resolver that hangs or finds nothing: each a 400 with a reason."""
    for url in ("http://93.184.216.34:99999/", "https://93.184.216.34/" + "a" * 2100):
        with pytest.raises(BadRequest) as refused:
            await check_url(url, allow_private=False)
        assert refused.value.code == "bad_url"

    async def hang(host: str, port: int) -> list[str]:
        await asyncio.sleep(10)
        return []

    for resolve, words in ((hang, "within 0.01 s"), (_resolver({"empty.test": []}), "does not resolve")):
        with pytest.raises(BadRequest) as refused:
            await check_url("https://empty.test/", allow_private=False, resolve=resolve, timeout_s=0.01)
        assert refused.value.code == "unresolvable_host" and words in refused.value.message


async def test_dial_time_resolution_failures_are_connect_errors() -> None:
    """A name that stops resolving, or resolves to nothing, fails the attempt as a connection error."""
    transport = guarded_transport(LIMITS, allow_private=False, resolve=_resolver({"empty.test": []}))
    async with httpx.AsyncClient(transport=transport) as client:
        for url in ("http://gone.test/hook", "http://empty.test/hook"):
            with pytest.raises(httpx.ConnectError):
                await client.post(url, content=b"{}")


async def test_dial_falls_back_to_the_next_checked_address() -> None:
    """When the first checked address refuses, the next one is dialled within the same connect."""
    async with subscriber() as sub:
        resolve = _resolver({"two.test": ["127.0.0.2", "127.0.0.1"]})
        transport = guarded_transport(LIMITS, allow_private=False, resolve=resolve, check=lambda _: None)
        async with httpx.AsyncClient(transport=transport) as client:
            assert (await client.post(f"http://two.test:{sub.port}/", content=b"{}")).status_code == 200
