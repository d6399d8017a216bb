"""The destination guard: which addresses are refused, at subscribe time and at dial time."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import aiohttp
import orjson
import pytest

from relay.delivery import Deliverer
from relay.errors import BadRequest
from relay.ssrf import (
    DestinationBlocked,
    Resolver,
    blocked_reason,
    check_url,
    guarded_connector,
    system_resolver,
)
from tests.conftest import Clock, make_settings, start_relay
from tests.subscriber import Reply, subscriber

SECRET = "whsec_c2lnbmluZy1zZWNyZXQtZm9yLXRlc3Rz"


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


@asynccontextmanager
async def guarded_session(
    allow_private: bool = False,
    resolve: Resolver = system_resolver,
    check: Callable[[str], str | None] = blocked_reason,
) -> AsyncIterator[aiohttp.ClientSession]:
    """A session on the deliverer's guarded connector (as `relay.delivery_http.delivery_client` builds it)."""
    connector = guarded_connector(
        4, allow_private=allow_private, keepalive_s=5.0, resolve=resolve, check=check
    )
    async with aiohttp.ClientSession(connector=connector, trust_env=False) as session:
        yield session


async def post(session: aiohttp.ClientSession, url: str) -> int:
    async with session.post(url, data=b"{}", allow_redirects=False) as response:
        return response.status


@pytest.mark.parametrize("address", ["127.0.0.1", "::ffff:127.0.0.1", "::1"])
async def test_dial_time_check_refuses_a_name_that_rebinds_to_loopback(address: str) -> None:
    """A name that resolved publicly at subscribe time but now resolves to loopback (in any spelling) is not
    connected to."""
    async with subscriber() as sub, guarded_session(resolve=_resolver({"rebind.test": [address]})) as s:
        with pytest.raises(aiohttp.ClientConnectorError) as refused:
            await post(s, f"http://rebind.test:{sub.port}/hook")
        assert isinstance(refused.value.os_error, DestinationBlocked)
        assert f"{address} (loopback)" in str(refused.value)
        assert sub.connections == 0


@pytest.mark.parametrize(
    "host",
    ["127.0.0.1", "[::ffff:127.0.0.1]", "[::ffff:7f00:1]", "[::127.0.0.1]", "localhost"],
)
async def test_dial_time_check_covers_literal_addresses(host: str) -> None:
    """An IP literal in the URL (aiohttp does not resolve those), in any IPv6 spelling of an IPv4 address,
    goes through the same check, with the real resolver: the subscriber sees no connection."""
    async with subscriber() as sub, guarded_session() as session:
        with pytest.raises(aiohttp.ClientConnectorError) as refused:
            await post(session, f"http://{host}:{sub.port}/hook")
        assert isinstance(refused.value.os_error, DestinationBlocked), refused.value
        assert sub.connections == 0


async def test_an_address_that_does_not_parse_is_refused() -> None:
    """A resolver answer that is not an IP address is refused, not handed to the socket layer to resolve."""
    async with subscriber() as sub, guarded_session(resolve=_resolver({"odd.test": ["localhost"]})) as s:
        with pytest.raises(aiohttp.ClientConnectorError) as refused:
            await post(s, f"http://odd.test:{sub.port}/hook")
        assert isinstance(refused.value.os_error, DestinationBlocked)
        assert "localhost (not an IP address)" in str(refused.value.os_error)
        assert sub.connections == 0


async def test_numeric_forms_of_loopback_are_refused() -> None:
    """Legacy numeric IPv4 spellings (an integer, a short form) do not reach loopback either."""
    async with subscriber() as sub, guarded_session() as session:
        for host in ("2130706433", "127.1", "0x7f000001", "017700000001", "127.0.0.1."):
            with pytest.raises(aiohttp.ClientError):
                await post(session, f"http://{host}:{sub.port}/hook")
        assert sub.connections == 0


async def test_the_checked_address_is_the_one_dialled() -> None:
    """The guard connects to the address it resolved and checked, not to a second lookup of the name."""
    async with subscriber() as sub:
        resolve = _resolver({"sub.test": ["127.0.0.1"]})
        async with guarded_session(resolve=resolve, check=lambda _: None) as session:
            assert await post(session, f"http://sub.test:{sub.port}/hook") == 200
        assert sub.received[0].headers["host"] == f"sub.test:{sub.port}"


async def test_allow_private_gives_a_plain_connector() -> None:
    """With allow_private_destinations loopback subscribers are reached."""
    async with subscriber() as sub, guarded_session(allow_private=True) as session:
        assert await post(session, sub.url) == 200


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
    async with guarded_session(resolve=_resolver({"empty.test": []})) as session:
        for url in ("http://gone.test/hook", "http://empty.test/hook"):
            with pytest.raises(aiohttp.ClientConnectorError) as failed:
                await post(session, url)
            assert not isinstance(failed.value.os_error, DestinationBlocked)


async def test_a_name_with_any_refused_address_is_refused_whole() -> None:
    """A name resolving to a public and a loopback address is refused, not dialled at its other address."""
    async with subscriber() as sub:
        resolve = _resolver({"mixed.test": ["93.184.216.34", "127.0.0.1"]})
        async with guarded_session(resolve=resolve) as session:
            with pytest.raises(aiohttp.ClientConnectorError) as refused:
                await post(session, f"http://mixed.test:{sub.port}/")
        assert isinstance(refused.value.os_error, DestinationBlocked)
        assert "127.0.0.1 (loopback)" in str(refused.value.os_error)
        assert sub.connections == 0


async def test_dial_falls_back_to_the_next_checked_address() -> None:
    """When the first checked address refuses, the next one is dialled within the same connect."""
    async with subscriber() as sub:
        resolve = _resolver({"two.test": ["127.0.0.2", "127.0.0.1"]})
        async with guarded_session(resolve=resolve, check=lambda _: None) as session:
            assert await post(session, f"http://two.test:{sub.port}/") == 200


async def test_the_deliverer_does_not_follow_a_redirect(tmp_path: Path) -> None:
    """A redirect (here to another loopback subscriber, reachable with private destinations allowed) is an
    answer recorded with its Location, never a second request."""
    clock = Clock()
    settings = make_settings(tmp_path, allow_private_destinations=True)
    async with subscriber() as target, start_relay(settings, clock, background=False) as relay:
        moved = Reply(302, b"moved", {"location": target.url})
        async with subscriber(then=moved) as sub:
            await relay.services.store.create_subscription(sub.url, None, None, SECRET, clock.now)
            body = orjson.dumps({"id": "j", "status": "succeeded", "output": ["x"]})
            assert (await relay.post_callback("demo", body, timestamp=clock.now)).status_code == 200
            deliverer = relay.services.loop(Deliverer)
            assert await deliverer.run_once(clock.now) == 1
            await deliverer.drain()
        (listed,) = (await relay.client.get("/v1/deliveries")).json()["deliveries"]
        (attempt,) = listed["attempts"]
        assert (attempt["status_code"], attempt["response"]) == (302, "moved")
        assert f"redirect to {target.url!r} not followed" in attempt["error"]
        assert len(sub.received) == 1 and target.connections == 0
