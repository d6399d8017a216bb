"""fetch_to_store against a real file origin on loopback: streamed, hashed, bounded, redirects checked."""

from __future__ import annotations

import hashlib
import os
import socket

import aiohttp
import pytest

from relay.archive import (
    BadStatus,
    FetchedFile,
    FetchError,
    FetchTimeout,
    FileTooLarge,
    HostRefused,
    archive_session,
    fetch_to_store,
)
from relay.ssrf import blocked_reason
from tests.archive.conftest import StoreUnderTest
from tests.archive.origin import Origin, Route

MIB = 1024 * 1024
LOOPBACK = ["127.0.0.1"]


async def fetch(
    session: aiohttp.ClientSession,
    target: StoreUnderTest,
    url: str,
    *,
    max_bytes: int = 64 * MIB,
    timeout_s: float = 10.0,
    hosts: list[str] = LOOPBACK,
) -> FetchedFile:
    return await fetch_to_store(
        session, url, target.store, "jobs/j/f", max_bytes=max_bytes, timeout_s=timeout_s, allowed_hosts=hosts
    )


async def test_a_file_is_stored_with_its_sha256_size_and_type(
    origin: Origin, session: aiohttp.ClientSession, file_store: StoreUnderTest
) -> None:
    """The stored bytes are the origin's; sha256, size and Content-Type come back with them."""
    data = os.urandom(3 * MIB + 17)
    origin.routes["/out.png"] = Route(body=data, headers={"Content-Type": "image/png"})

    fetched = await fetch_to_store(
        session,
        origin.url("/out.png"),
        file_store.store,
        "jobs/j/f",
        max_bytes=64 * MIB,
        timeout_s=10,
        allowed_hosts=LOOPBACK,
    )

    assert (fetched.bytes, fetched.sha256) == (len(data), hashlib.sha256(data).hexdigest())
    assert fetched.content_type == "image/png"
    assert await (await file_store.store.open("jobs/j/f")).read_all() == data


async def test_a_chunked_file_without_a_type_gets_one_guessed_from_its_url(
    origin: Origin, session: aiohttp.ClientSession, file_store: StoreUnderTest
) -> None:
    """No Content-Length and no Content-Type: the bytes are counted as they come, the type is guessed."""
    data = os.urandom(MIB)
    origin.routes["/a/out.png"] = Route(body=data, chunked=True)
    fetched = await fetch_to_store(
        session,
        origin.url("/a/out.png"),
        file_store.store,
        "f",
        max_bytes=MIB,
        timeout_s=10,
        allowed_hosts=LOOPBACK,
    )
    assert (fetched.bytes, fetched.content_type) == (MIB, "image/png")
    assert fetched.sha256 == hashlib.sha256(data).hexdigest()


async def test_a_garbled_type_without_an_extension_is_octet_stream(
    origin: Origin, session: aiohttp.ClientSession, file_store: StoreUnderTest
) -> None:
    """A Content-Type that is not a media type is not trusted."""
    origin.routes["/blob"] = Route(body=b"x", headers={"Content-Type": "<script>"})
    fetched = await fetch(session, file_store, origin.url("/blob"))
    assert fetched.content_type == "application/octet-stream"


async def test_a_declared_length_over_the_limit_fails_before_reading(
    origin: Origin, session: aiohttp.ClientSession, store_under_test: StoreUnderTest
) -> None:
    """A Content-Length over max_bytes fails at once, naming the size; nothing is stored."""
    origin.routes["/big"] = Route(body=os.urandom(2 * MIB))
    with pytest.raises(FileTooLarge, match=f"is {2 * MIB} bytes, over max_file_bytes") as failed:
        await fetch(session, store_under_test, origin.url("/big"), max_bytes=MIB)
    assert not failed.value.retryable
    assert await store_under_test.leftovers() == []


async def test_a_chunked_body_over_the_limit_fails_with_nothing_kept(
    origin: Origin, session: aiohttp.ClientSession, store_under_test: StoreUnderTest
) -> None:
    """Without a Content-Length the count while streaming stops it (past S3's first part, too)."""
    origin.routes["/big"] = Route(body=os.urandom(9 * MIB), chunked=True)
    with pytest.raises(FileTooLarge, match="sent more"):
        await fetch(session, store_under_test, origin.url("/big"), max_bytes=8 * MIB)
    assert await store_under_test.leftovers() == []


async def test_a_500_is_a_retryable_error_and_a_404_is_not(
    origin: Origin, session: aiohttp.ClientSession, file_store: StoreUnderTest
) -> None:
    """The status is in the error; a server error may pass, a missing file will not come back."""
    origin.routes["/broken"] = Route(status=500, body=b"oops")
    with pytest.raises(BadStatus, match=r"127\.0\.0\.1 answered 500") as server_error:
        await fetch(session, file_store, origin.url("/broken"))
    assert (server_error.value.status, server_error.value.retryable) == (500, True)
    with pytest.raises(BadStatus) as missing:
        await fetch(session, file_store, origin.url("/gone"))
    assert (missing.value.status, missing.value.retryable) == (404, False)
    assert await file_store.leftovers() == []


async def test_a_stalled_download_times_out_with_nothing_kept(
    origin: Origin, session: aiohttp.ClientSession, store_under_test: StoreUnderTest
) -> None:
    """The per-file timeout covers the whole body; a stall midway is a retryable timeout."""
    origin.routes["/slow"] = Route(body=os.urandom(2 * MIB), stall_after=MIB + 5)
    with pytest.raises(FetchTimeout, match=r"within 0\.3 s") as failed:
        await fetch(session, store_under_test, origin.url("/slow"), timeout_s=0.3)
    assert failed.value.retryable
    assert await store_under_test.leftovers() == []


async def test_a_body_cut_short_is_retryable_and_kept_nowhere(
    origin: Origin, session: aiohttp.ClientSession, file_store: StoreUnderTest
) -> None:
    """A connection closed before Content-Length bytes came is a broken download, not a file."""
    origin.routes["/cut"] = Route(body=os.urandom(MIB), headers={"Content-Length": str(2 * MIB)})
    with pytest.raises(FetchError, match="broke off") as failed:
        await fetch(session, file_store, origin.url("/cut"))
    assert failed.value.retryable
    assert await file_store.leftovers() == []


async def test_a_redirect_to_an_allowed_host_is_followed(
    origin: Origin, session: aiohttp.ClientSession, file_store: StoreUnderTest
) -> None:
    """Each hop's host is checked; relative and absolute Locations both work."""
    data = os.urandom(1000)
    origin.routes["/out.png"] = Route(body=data, headers={"Content-Type": "image/png"})
    origin.routes["/first"] = Route(status=302, headers={"Location": "/second"})
    origin.routes["/second"] = Route(
        status=307, headers={"Location": origin.url("/out.png", host="localhost")}
    )

    fetched = await fetch(session, file_store, origin.url("/first"), hosts=["127.0.0.1", "localhost"])

    assert fetched == FetchedFile(1000, hashlib.sha256(data).hexdigest(), "image/png")
    assert origin.requests[-1] == (f"localhost:{origin.port}", "/out.png")


async def test_a_redirect_to_another_host_is_refused_without_asking_it(
    origin: Origin, session: aiohttp.ClientSession, file_store: StoreUnderTest
) -> None:
    """A Location on a host outside archive_hosts ends the fetch before any request to it."""
    origin.routes["/out.png"] = Route(body=b"x")
    origin.routes["/away"] = Route(status=301, headers={"Location": origin.url("/out.png", host="localhost")})
    with pytest.raises(HostRefused, match="localhost is not an archive host") as refused:
        await fetch(session, file_store, origin.url("/away"))
    assert not refused.value.retryable
    assert origin.paths() == ["/away"]
    assert await file_store.leftovers() == []


async def test_a_url_off_the_archive_hosts_is_not_asked(
    origin: Origin, session: aiohttp.ClientSession, file_store: StoreUnderTest
) -> None:
    """The first URL is checked like every hop."""
    with pytest.raises(HostRefused):
        await fetch(session, file_store, origin.url("/x"), hosts=["example.com"])
    assert origin.requests == []


async def test_a_redirect_loop_ends(
    origin: Origin, session: aiohttp.ClientSession, file_store: StoreUnderTest
) -> None:
    """At most five redirects are followed."""
    origin.routes["/loop"] = Route(status=302, headers={"Location": "/loop"})
    with pytest.raises(FetchError, match="more than 5 redirects"):
        await fetch(session, file_store, origin.url("/loop"))
    assert len(origin.requests) == 6


async def test_the_guard_refuses_a_loopback_origin_by_default(
    origin: Origin, file_store: StoreUnderTest
) -> None:
    """Without allow_private the dialled address is refused, even on an archive host."""
    origin.routes["/x"] = Route(body=b"x")
    async with archive_session(allow_private=False) as guarded:
        with pytest.raises(HostRefused, match=r"destination refused: .*\(loopback\)") as refused:
            await fetch(guarded, file_store, origin.url("/x"))
    assert not refused.value.retryable
    assert origin.requests == []


async def test_the_guard_checks_the_address_a_redirect_dials(
    origin: Origin, file_store: StoreUnderTest
) -> None:
    """A redirect to an allowed host name is still refused at dial time when its address is not allowed."""

    def only_the_origin(address: str) -> str | None:
        return None if address == "127.0.0.1" else blocked_reason(address)

    origin.routes["/hop"] = Route(status=302, headers={"Location": origin.url("/x", host="127.0.0.2")})
    async with archive_session(allow_private=False, check=only_the_origin) as guarded:
        with pytest.raises(HostRefused, match=r"destination refused: 127\.0\.0\.2 \(loopback\)"):
            await fetch(guarded, file_store, origin.url("/hop"), hosts=["127.0.0.1", "127.0.0.2"])
    assert origin.paths() == ["/hop"]


async def test_a_refused_connection_is_retryable(
    session: aiohttp.ClientSession, file_store: StoreUnderTest
) -> None:
    """Nothing listening at the origin: a connection error a later attempt may get past."""
    with socket.socket() as bound_not_listening:
        bound_not_listening.bind(("127.0.0.1", 0))
        port = bound_not_listening.getsockname()[1]
        with pytest.raises(FetchError, match="connection failed") as failed:
            await fetch(session, file_store, f"http://127.0.0.1:{port}/x")
    assert failed.value.retryable


async def test_a_malformed_answer_is_retryable(
    origin: Origin, session: aiohttp.ClientSession, file_store: StoreUnderTest
) -> None:
    """An answer aiohttp cannot parse is an error naming what went wrong, not a crash."""
    origin.routes["/bad"] = Route(body=b"x", headers={"Content-Length": "many"})
    with pytest.raises(FetchError, match="ClientResponseError") as failed:
        await fetch(session, file_store, origin.url("/bad"))
    assert failed.value.retryable
    assert await file_store.leftovers() == []
