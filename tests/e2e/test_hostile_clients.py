"""Hostile clients against `relay serve`: idle sockets past the cap, slow or huge headers, slow bodies."""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tests.conftest import DEMO_SECRET, signed_headers, wait_for
from tests.e2e.conftest import RelayProcess, write_config

MAX_CONNECTIONS = 200
ATTACKERS = 300  # sockets opened against the cap of 200
PARTIAL_HEAD = b"POST /hooks/demo HTTP/1.1\r\nHost: relay\r\nX-Slow: "
STALLED_BODY = b"POST /hooks/demo HTTP/1.1\r\nHost: relay\r\nContent-Length: 100\r\n\r\n{"


async def _started(spawn: Callable[..., RelayProcess], tmp_path: Path, **top: Any) -> RelayProcess:
    config = write_config(tmp_path / "relay.toml", max_connections=MAX_CONNECTIONS, **top)
    process = spawn("--config", str(config))
    await process.ready()
    return process


async def _open(
    process: RelayProcess, first_bytes: bytes
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    reader, writer = await asyncio.open_connection(process.host, process.port)
    writer.write(first_bytes)
    await writer.drain()
    return reader, writer


async def _answer(reader: asyncio.StreamReader, within: float = 10.0) -> tuple[int, dict[str, Any]]:
    """The status and JSON body of the one answer on a connection the server closes after it."""
    raw = await asyncio.wait_for(reader.read(), within)
    head, _, body = raw.partition(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1]), json.loads(body)


def _rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


async def test_idle_sockets_and_stalled_bodies_past_the_cap_leave_health_and_callbacks_answering(
    tmp_path: Path, spawn: Any
) -> None:
    """Past the cap, partial heads then stalled bodies are evicted oldest first; health and callbacks pass."""
    process = await _started(spawn, tmp_path, header_timeout_s=30.0)
    heads = [await _open(process, PARTIAL_HEAD) for _ in range(ATTACKERS - MAX_CONNECTIONS)]
    bodies = [await _open(process, STALLED_BODY) for _ in range(MAX_CONNECTIONS)]
    closed = [asyncio.create_task(reader.read()) for reader, _ in [*heads, *bodies]]
    try:
        # Every partial head made room for a stalled body, which is a request under way.
        await wait_for(lambda: all(task.done() for task in closed[: len(heads)]), within=5)
        assert not any(task.done() for task in closed[len(heads) :])
        fds = len(os.listdir(f"/proc/{process.proc.pid}/fd"))
        assert fds < MAX_CONNECTIONS + 100, fds
        payload = b'{"id": "job-under-attack", "status": "succeeded"}'
        async with process.client() as client:
            health = await client.get("/healthz")
            callback = await client.post(
                "/hooks/demo", content=payload, headers=signed_headers(DEMO_SECRET, payload)
            )
        assert health.status_code == 200
        assert callback.status_code == 200 and callback.json()["accepted"] is True
        # The oldest stalled body made room for them; the rest of the attack still holds its sockets.
        await wait_for(lambda: closed[len(heads)].done(), within=5)
        assert sum(task.done() for task in closed[len(heads) :]) == 1
    finally:
        for task in closed:
            task.cancel()
        for _, writer in [*heads, *bodies]:
            writer.close()


async def test_slow_header_sender_is_closed_after_header_timeout(tmp_path: Path, spawn: Any) -> None:
    """A client that keeps sending header bytes, slowly, is cut off once header_timeout_s has passed."""
    timeout = 0.5
    process = await _started(spawn, tmp_path, header_timeout_s=timeout)
    started = time.monotonic()
    reader, writer = await _open(process, PARTIAL_HEAD)

    async def trickle() -> None:
        while not writer.is_closing():
            writer.write(b"a")
            await asyncio.sleep(0.05)  # the attack's own pace, not a wait for state

    sender = asyncio.create_task(trickle())
    try:
        assert await asyncio.wait_for(reader.read(), 5) == b""
        elapsed = time.monotonic() - started
    finally:
        sender.cancel()
        writer.close()
    assert timeout <= elapsed < timeout + 1.5, elapsed


async def test_huge_header_line_and_too_many_headers_get_431_without_memory_growth(
    tmp_path: Path, spawn: Any
) -> None:
    """1 MiB header lines (4 held open) and 1,000 headers get 431; RSS grows by less than one line."""
    process = await _started(spawn, tmp_path)
    line = 1024 * 1024
    before = _rss_kib(process.proc.pid)
    # The line is never finished: an unbounded server would hold all of it until the client gave up.
    huge = [await _open(process, b"GET /healthz HTTP/1.1\r\nX-Big: " + b"a" * line) for _ in range(4)]
    many_headers = b"".join(b"X-H%d: v\r\n" % i for i in range(1000))
    many = await _open(process, b"GET /healthz HTTP/1.1\r\n" + many_headers + b"\r\n")
    try:
        for reader, _ in [*huge, many]:
            status, body = await _answer(reader)
            assert status == 431 and body["error"]["code"] == "headers_too_large"
        grown = _rss_kib(process.proc.pid) - before
    finally:
        for _, writer in [*huge, many]:
            writer.close()
    assert grown < line // 1024, f"RSS grew by {grown} KiB"


async def test_stalled_body_gets_408_after_body_timeout(tmp_path: Path, spawn: Any) -> None:
    """A callback whose body stops short is answered 408 `body_timeout` once body_timeout_s has passed."""
    timeout = 0.5
    process = await _started(spawn, tmp_path, body_timeout_s=timeout)
    started = time.monotonic()
    reader, writer = await _open(
        process, b'POST /hooks/demo HTTP/1.1\r\nHost: relay\r\nContent-Length: 100\r\n\r\n{"id": '
    )
    try:
        status, body = await _answer(reader)
        elapsed = time.monotonic() - started
    finally:
        writer.close()
    assert status == 408 and body["error"]["code"] == "body_timeout"
    assert timeout <= elapsed < timeout + 1.5, elapsed
