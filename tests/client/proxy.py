"""A loopback TCP proxy in front of a relay that can cut every open connection (as a load balancer restart or
a network failure does) and turn new ones away for a while; it records what clients sent on each."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

__all__ = ["TcpProxy", "tcp_proxy"]


class TcpProxy:
    def __init__(self, upstream_port: int) -> None:
        self._upstream_port = upstream_port
        self._server: asyncio.Server | None = None
        self._open: set[asyncio.StreamWriter] = set()
        self.refusing = False  # new connections are closed at once, before any answer
        self.refused = 0  # connections closed that way
        self.sent: list[bytearray] = []  # per connection, the bytes clients sent through

    @property
    def url(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.sockets[0].getsockname()[1]}"

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            self.drop()
            await self._server.wait_closed()

    def drop(self) -> None:
        """Cut every open connection on both sides, with no goodbye (a reset)."""
        for writer in list(self._open):
            writer.transport.abort()

    def requests_with(self, text: str) -> int:
        """How many connections carried `text` (case-insensitive) in what the client sent."""
        needle = text.lower().encode()
        return sum(needle in bytes(sent).lower() for sent in self.sent)

    async def _serve(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        if self.refusing:
            self.refused += 1
            client_writer.transport.abort()
            return
        upstream_reader, upstream_writer = await asyncio.open_connection("127.0.0.1", self._upstream_port)
        sent = bytearray()
        self.sent.append(sent)
        self._open |= {client_writer, upstream_writer}
        try:
            await asyncio.gather(
                _pipe(client_reader, upstream_writer, sent), _pipe(upstream_reader, client_writer, None)
            )
        finally:
            self._open -= {client_writer, upstream_writer}


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, record: bytearray | None) -> None:
    try:
        while data := await reader.read(65536):
            if record is not None:
                record += data
            writer.write(data)
            await writer.drain()
    except OSError:  # the other side is gone (reset, or cut by drop())
        pass
    finally:
        writer.close()


@contextlib.asynccontextmanager
async def tcp_proxy(upstream_port: int) -> AsyncIterator[TcpProxy]:
    """A started proxy to 127.0.0.1:`upstream_port`, closed when the block ends."""
    proxy = TcpProxy(upstream_port)
    await proxy.start()
    try:
        yield proxy
    finally:
        await proxy.close()
