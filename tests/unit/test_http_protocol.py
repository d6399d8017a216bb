"""The connection registry (cap, eviction, deadlines) and the bounded HTTP protocol on a loopback socket."""

from __future__ import annotations

import asyncio
import resource
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from relay.connections import (
    ConnectionLimits,
    ConnectionRegistry,
    Deadlines,
    automatic_max_connections,
    raise_open_file_limit,
    with_room_for_requests,
)
from relay.errors import ConfigError
from relay.http_protocol import RelayHttpProtocol, protocol_class
from relay.server import guarded_protocol
from tests.conftest import (
    API_KEY,
    DEMO_SECRET,
    Clock,
    LiveRelay,
    make_settings,
    signed_headers,
    start_relay,
    wait_for,
)

LIMITS = ConnectionLimits(
    max_connections=3, header_timeout_s=10.0, body_timeout_s=30.0, max_header_bytes=300, max_headers=5
)


@dataclass(eq=False)
class FakeConnection:
    """Records what the registry asked of it; closed, it forgets itself, as the protocol does."""

    registry: ConnectionRegistry[FakeConnection] | None = None
    calls: list[str] = field(default_factory=list)

    def close_now(self) -> None:
        self.calls.append("close")
        if self.registry is not None:
            self.registry.forget(self)

    def body_expired(self) -> None:
        self.calls.append("body")


def registry(clock: Clock | None = None) -> ConnectionRegistry[FakeConnection]:
    return ConnectionRegistry(LIMITS, clock or Clock(0.0), autosweep=False)


def started(reg: ConnectionRegistry[FakeConnection], conn: FakeConnection) -> None:
    """A request's headers are complete, as the protocol records it: busy, its head's clock stopped."""
    reg.heads.pop(conn, None)
    reg.idle.pop(conn, None)


def test_deadlines_expire_oldest_first_and_stop_at_the_first_still_running() -> None:
    """Only members whose timeout has passed come out, in the order they were added."""
    deadlines: Deadlines[str] = Deadlines(10.0)
    for name, at in (("a", 0.0), ("b", 1.0), ("c", 5.0)):
        deadlines[name] = at
    deadlines.pop("b")
    assert deadlines.expired(10.0) == ["a"]
    assert deadlines.expired(14.9) == []
    assert deadlines.expired(15.0) == ["c"] and len(deadlines) == 0


def test_at_the_cap_the_oldest_idle_connection_makes_room() -> None:
    """A new connection at the cap evicts the connection idle the longest, not a busy one."""
    reg = registry()
    first, busy, third, newcomer = (FakeConnection(reg) for _ in range(4))
    for conn in (first, busy, third):
        assert reg.admit(conn)
    started(reg, busy)
    started(reg, first)
    reg.idle[first] = None  # answered: idle again, and now the newest idle one
    assert reg.admit(newcomer)
    assert third.calls == ["close"] and first.calls == [] and busy.calls == []
    assert len(reg) == 3 and third not in reg.idle and third not in reg.heads and newcomer in reg.idle


def test_with_none_idle_the_oldest_body_still_arriving_makes_room() -> None:
    """A request whose body is still coming is evicted before any request that was received whole."""
    reg = registry()
    received, uploading, later_upload = (FakeConnection() for _ in range(3))
    for conn in (received, uploading, later_upload):
        reg.admit(conn)
        started(reg, conn)
    reg.bodies[uploading] = 0.0
    reg.bodies[later_upload] = 1.0
    assert reg.admit(FakeConnection())
    assert uploading.calls == ["close"] and received.calls == [] and later_upload.calls == []


def test_when_every_request_was_received_the_new_connection_is_refused() -> None:
    """Requests received and in progress (stored, long-polls) are never evicted: the newcomer is refused."""
    reg = registry()
    conns = [FakeConnection() for _ in range(3)]
    for conn in conns:
        reg.admit(conn)
        started(reg, conn)
    newcomer = FakeConnection()
    assert not reg.admit(newcomer)
    assert len(reg) == 3 and newcomer not in reg.idle and newcomer not in reg.heads
    assert all(conn.calls == [] for conn in conns)


def test_a_forgotten_connection_frees_its_place_and_its_clocks() -> None:
    """A closed connection no longer counts, is not idle, and no deadline of its runs."""
    reg = registry()
    conn = FakeConnection()
    reg.admit(conn)
    reg.bodies[conn] = 0.0
    reg.forget(conn)
    assert len(reg) == 0 and conn not in reg.idle and reg.sweep(1e9) == 0


def test_sweep_closes_slow_heads_and_times_out_slow_bodies() -> None:
    """Heads past header_timeout_s are closed; bodies past body_timeout_s are told so; others are left."""
    clock = Clock(0.0)
    reg = registry(clock)
    slow_head, slow_body, fresh = FakeConnection(), FakeConnection(), FakeConnection()
    reg.admit(slow_head)
    reg.admit(slow_body)
    started(reg, slow_body)
    reg.bodies[slow_body] = 0.0
    clock.advance(9.0)
    reg.admit(fresh)
    assert reg.sweep(10.0) == 1 and slow_head.calls == ["close"]
    assert reg.sweep(30.0) == 2 and slow_body.calls == ["body"] and fresh.calls == ["close"]


def test_automatic_cap_stays_below_the_open_file_limit() -> None:
    """The automatic cap keeps room for files and outbound sockets, and is positive for tiny limits."""
    settings = make_settings(Path("/nonexistent"))
    assert 18_000 < automatic_max_connections(20_000, settings) < 20_000
    assert 0 < automatic_max_connections(256, settings) < 256


def test_waiters_are_fitted_inside_the_connection_cap(tmp_path: Path) -> None:
    """max_waiters above the cap is lowered so held long-polls leave a tenth of it to other requests."""
    _, settings = guarded_protocol(make_settings(tmp_path, max_connections=200), fd_limit=20_000)
    assert settings.max_waiters == 180
    small = make_settings(tmp_path, max_waiters=50)
    assert with_room_for_requests(small, 200) is small


@pytest.fixture
def lowered_soft_limit() -> Iterator[tuple[int, int]]:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(soft, 512), hard))
    yield soft, hard
    resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def test_the_soft_open_file_limit_is_raised_to_the_hard_one(lowered_soft_limit: tuple[int, int]) -> None:
    """As Go and nginx do: the process may use every descriptor its hard limit allows."""
    _, hard = lowered_soft_limit
    assert raise_open_file_limit() == resource.getrlimit(resource.RLIMIT_NOFILE)[0] == hard


@pytest.mark.parametrize(
    ("key", "value"),
    [("max_connections", -1), ("header_timeout_s", 0), ("body_timeout_s", -1.0), ("max_header_bytes", 0)],
)
def test_connection_settings_must_be_positive(tmp_path: Path, key: str, value: Any) -> None:
    """Each limit is refused with a message naming it (max_connections may be 0: automatic)."""
    with pytest.raises(ConfigError, match=f"^{key}:"):
        make_settings(tmp_path, **{key: value})


# --- the protocol, served in-process on a real socket, its clock and sweeps driven by the test -------


@dataclass
class Guarded:
    live: LiveRelay
    port: int
    clock: Clock
    registry: ConnectionRegistry[RelayHttpProtocol]
    writers: list[asyncio.StreamWriter] = field(default_factory=list)

    async def connect(self, data: bytes = b"") -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        """A raw connection that has sent `data` (closed when the server is stopped)."""
        reader, writer = await asyncio.open_connection("127.0.0.1", self.port)
        self.writers.append(writer)
        writer.write(data)
        await writer.drain()
        return reader, writer


@asynccontextmanager
async def guarded(tmp_path: Path, autosweep: bool = False, **limits: Any) -> AsyncIterator[Guarded]:
    """relay served with the protocol; its sweeps run by themselves on the real clock only if `autosweep`."""
    clock = Clock(0.0)
    reg: ConnectionRegistry[RelayHttpProtocol] = ConnectionRegistry(
        ConnectionLimits(**{**LIMITS.__dict__, **limits}),
        time.monotonic if autosweep else clock,
        autosweep=autosweep,
    )
    async with start_relay(make_settings(tmp_path), http=protocol_class(reg)) as live:
        server = Guarded(live, int(live.base_url.rsplit(":", 1)[1]), clock, reg)
        try:
            yield server
        finally:
            for writer in server.writers:
                writer.close()
            await asyncio.gather(*(w.wait_closed() for w in server.writers), return_exceptions=True)


def callback_head(payload: bytes) -> bytes:
    """The request line and headers of a signed callback carrying `payload`."""
    head = b"POST /hooks/demo HTTP/1.1\r\nHost: relay\r\nContent-Length: %d\r\n" % len(payload)
    signed = signed_headers(DEMO_SECRET, payload)
    return head + b"".join(b"%s: %s\r\n" % (k.encode(), v.encode()) for k, v in signed.items()) + b"\r\n"


def healthz(extra: bytes = b"") -> bytes:
    return b"GET /healthz HTTP/1.1\r\nHost: relay\r\n" + extra + b"\r\n"


async def status_of(reader: asyncio.StreamReader) -> int:
    """The status of the next answer (headers read; a body, if any, left for later reads)."""
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
    return int(head.split(b" ", 2)[1])


def long_poll(job_id: str) -> bytes:
    return b"GET /v1/jobs/demo/%s?wait=30 HTTP/1.1\r\nHost: r\r\nAuthorization: Bearer %s\r\n\r\n" % (
        job_id.encode(),
        API_KEY.encode(),
    )


async def test_a_stalled_body_makes_room_and_then_every_connection_busy_refuses_with_503(
    tmp_path: Path,
) -> None:
    """A stalled body is evicted for a newcomer; with every request received, the next gets 503."""
    # Cap 3: two long-polls and a stalled body, then a third long-poll, then one connection too many.
    async with guarded(tmp_path) as server:
        for job in ("a", "b"):
            await server.connect(long_poll(job))
        stalled, _ = await server.connect(
            b"POST /hooks/demo HTTP/1.1\r\nHost: r\r\nContent-Length: 10\r\n\r\n"
        )
        await wait_for(lambda: len(server.registry) == 3 and len(server.registry.bodies) == 1)
        reader, _ = await server.connect(long_poll("c"))
        assert await asyncio.wait_for(stalled.read(), 5) == b""
        await wait_for(lambda: server.live.services.hub.count == 3)
        refused, _ = await server.connect()
        raw = await asyncio.wait_for(refused.read(), 5)
        assert raw.startswith(b"HTTP/1.1 503 ") and b'"too_many_connections"' in raw
        server.live.server.release_waiters()
        assert await status_of(reader) == 404  # the long-poll is answered: its job never came


async def test_header_clock_of_a_kept_alive_request_starts_at_its_first_byte(tmp_path: Path) -> None:
    """A second request begun long after the first is timed from its own first byte, then closed."""
    async with guarded(tmp_path) as server:
        reader, writer = await server.connect(healthz())
        assert await status_of(reader) == 200
        server.clock.advance(100.0)  # idle between requests far longer than the header timeout
        writer.write(b"GET /healthz HTTP/1.1\r\nHost: re")
        await wait_for(lambda: len(server.registry.heads) == 1)
        assert server.registry.sweep(105.0) == 0
        assert server.registry.sweep(110.0) == 1
        await reader.readuntil(b'"ok"}')
        assert await asyncio.wait_for(reader.read(), 5) == b""


async def test_headers_up_to_the_bounds_pass_and_one_more_gets_431(tmp_path: Path) -> None:
    """max_headers fields and max_header_bytes bytes are taken; one field or byte more is 431, then close."""
    async with guarded(tmp_path) as server:
        five = b"".join(b"X-%d: v\r\n" % i for i in range(4))  # with Host, five fields
        fits = healthz(b"X-Pad: " + b"p" * (300 - len(healthz(b"X-Pad: \r\n"))) + b"\r\n")
        assert len(fits) == 300
        for request, expected in ((healthz(five), 200), (fits, 200)):
            reader, _ = await server.connect(request)
            assert await status_of(reader) == expected
        for request in (healthz(five + b"X-4: v\r\n"), fits.replace(b"X-Pad: ", b"X-Pad: p")):
            reader, _ = await server.connect(request)
            raw = await asyncio.wait_for(reader.read(), 5)
            assert raw.startswith(b"HTTP/1.1 431 ") and b'"headers_too_large"' in raw
        reader, _ = await server.connect(b"NOT HTTP\r\n\r\n")  # malformed is still uvicorn's 400
        assert (await asyncio.wait_for(reader.read(), 5)).startswith(b"HTTP/1.1 400 ")


async def test_a_body_past_the_head_bound_in_the_same_read_is_taken(tmp_path: Path) -> None:
    """The head bound counts the head only: a callback whose body, sent with it, passes the bound is taken."""
    async with guarded(tmp_path, max_header_bytes=1024, max_headers=20) as server:
        payload = b'{"id": "job-big", "status": "succeeded", "pad": "%s"}' % (b"p" * 4000)
        reader, _ = await server.connect(callback_head(payload) + payload)
        assert await status_of(reader) == 200


async def test_pipelined_requests_and_a_body_in_pieces_are_answered(tmp_path: Path) -> None:
    """Two requests in one write are both answered; a body sent in two parts within the timeout is taken."""
    async with guarded(tmp_path, max_header_bytes=4096, max_headers=20) as server:
        reader, _ = await server.connect(healthz() + healthz())
        assert await status_of(reader) == 200
        await reader.readuntil(b'"ok"}')
        assert await status_of(reader) == 200
        payload = b'{"id": "job-in-pieces", "status": "succeeded"}'
        reader, writer = await server.connect(callback_head(payload) + payload[:10])
        await wait_for(lambda: len(server.registry.bodies) == 1)
        writer.write(payload[10:])
        assert await status_of(reader) == 200
        assert len(server.registry.bodies) == 0


async def test_a_body_left_unread_after_the_answer_is_closed_at_its_timeout(tmp_path: Path) -> None:
    """A 404 answered before its body came: the body's clock still runs, and the connection is closed."""
    async with guarded(tmp_path) as server:
        reader, _ = await server.connect(b"POST /nowhere HTTP/1.1\r\nHost: r\r\nContent-Length: 9\r\n\r\n")
        assert await status_of(reader) == 404
        assert len(server.registry.bodies) == 1
        assert server.registry.sweep(30.0) == 1
        await reader.readuntil(b"}}")
        assert await asyncio.wait_for(reader.read(), 5) == b""


async def test_a_stalled_body_is_answered_408_by_the_app(tmp_path: Path) -> None:
    """A callback body still short at body_timeout_s is answered 408 `body_timeout`, then the close."""
    async with guarded(tmp_path) as server:
        stalled = b"POST /hooks/demo HTTP/1.1\r\nHost: r\r\nContent-Length: 10\r\n\r\n{"
        reader, _ = await server.connect(stalled)
        await wait_for(lambda: len(server.registry.bodies) == 1)
        assert server.registry.sweep(29.0) == 0
        assert server.registry.sweep(30.0) == 1
        raw = await asyncio.wait_for(reader.read(), 5)
        assert raw.startswith(b"HTTP/1.1 408 ") and b'{"error":{"code":"body_timeout","message":' in raw


async def test_the_sweep_runs_by_itself_and_closes_a_silent_connection(tmp_path: Path) -> None:
    """With the real clock, a connection that never sends a byte is closed once header_timeout_s passes."""
    async with guarded(tmp_path, autosweep=True, header_timeout_s=0.2) as server:
        started = time.monotonic()
        reader, _ = await server.connect()
        assert await asyncio.wait_for(reader.read(), 5) == b""
        assert time.monotonic() - started >= 0.2
        await wait_for(lambda: len(server.registry) == 0)
