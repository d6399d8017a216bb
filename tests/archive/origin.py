"""A file origin for archive tests: a raw HTTP/1.1 server on 127.0.0.1 that answers each path by a script.

Raw, not a framework, so a test can send exactly what a CDN might: no Content-Type, chunked bodies without a
Content-Length, a stall in the middle of a body, any status or redirect.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

__all__ = ["Origin", "Route", "origin_server"]

CHUNK = 64 * 1024


@dataclass(frozen=True)
class Route:
    """One answer: `status`, `headers`, then `body` (with a Content-Length unless `chunked`); with
    `stall_after`, only that many bytes of the body and then nothing until the connection is closed."""

    status: int = 200
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    chunked: bool = False
    stall_after: int | None = None


@dataclass
class Origin:
    port: int
    routes: dict[str, Route] = field(default_factory=dict)
    requests: list[tuple[str, str]] = field(default_factory=list)  # (Host header, path) as asked

    def url(self, path: str, host: str = "127.0.0.1") -> str:
        return f"http://{host}:{self.port}{path}"

    def paths(self) -> list[str]:
        return [path for _, path in self.requests]


async def _answer(origin: Origin, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
    path = head[0].split(" ")[1]
    headers = dict(line.split(": ", 1) for line in head[1:] if ": " in line)
    origin.requests.append((headers.get("Host", headers.get("host", "")), path))
    route = origin.routes.get(path, Route(status=404, body=b"not found"))
    body = route.body if route.stall_after is None else route.body[: route.stall_after]
    lines = [
        f"HTTP/1.1 {route.status} X",
        "Connection: close",
        *(f"{k}: {v}" for k, v in route.headers.items()),
    ]
    if route.chunked:
        lines.append("Transfer-Encoding: chunked")
    elif "Content-Length" not in route.headers:  # a test may declare a length the body does not have
        lines.append(f"Content-Length: {len(route.body)}")
    writer.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))
    for start in range(0, len(body), CHUNK):
        piece = body[start : start + CHUNK]
        writer.write(b"%x\r\n%b\r\n" % (len(piece), piece) if route.chunked else piece)
        await writer.drain()
    if route.stall_after is not None:
        await asyncio.Event().wait()  # until the test ends and the server cancels it
    if route.chunked:
        writer.write(b"0\r\n\r\n")
    await writer.drain()


@contextlib.asynccontextmanager
async def origin_server() -> AsyncIterator[Origin]:
    """An origin on a free loopback port, closed (with every answer still running) at the end."""
    tasks: set[asyncio.Task[None]] = set()
    origin = Origin(port=0)

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        tasks.add(task)
        try:
            await _answer(origin, reader, writer)
        except (asyncio.IncompleteReadError, ConnectionError):
            pass  # the client hung up
        finally:
            tasks.discard(task)
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    origin.port = server.sockets[0].getsockname()[1]
    try:
        yield origin
    finally:
        server.close()
        for task in list(tasks):
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await server.wait_closed()
