"""A real subscriber for delivery tests: an HTTP/1.1 server on 127.0.0.1 that answers by a script."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson
from standardwebhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError

from tests.conftest import wait_for

__all__ = ["HANG", "Received", "Reply", "Subscriber", "subscriber"]


@dataclass(frozen=True)
class Reply:
    """One answer: wait `delay` s, send the status line and headers, wait `body_delay` s, send the body."""

    status: int = 200
    body: bytes = b"ok"
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0
    body_delay: float = 0.0


HANG = Reply(delay=3600.0)  # never answers (until the connection is closed)


@dataclass
class Received:
    """One request as the subscriber read it."""

    path: str
    headers: dict[str, str]
    body: bytes
    at: float

    @property
    def webhook_id(self) -> str:
        return self.headers["webhook-id"]

    def verify(self, secret: str) -> dict[str, Any]:
        """The body, after `standardwebhooks` checked the signature and timestamp (raises if they are wrong).

        A delivery made on a test's explicit clock carries that clock's timestamp, which the library would
        refuse as stale; its signature is then checked against the library's own `sign` instead.
        """
        timestamp = int(self.headers["webhook-timestamp"])
        if abs(time.time() - timestamp) < 240:
            Webhook(secret).verify(self.body, self.headers)
        else:
            when = datetime.fromtimestamp(timestamp, UTC)
            expected = Webhook(secret).sign(self.webhook_id, when, self.body.decode())
            if expected not in self.headers["webhook-signature"].split(" "):
                raise WebhookVerificationError("No matching signature found")
        return orjson.loads(self.body)  # type: ignore[no-any-return]


class Subscriber:
    """Answers requests with `script` in order, then with `then`; records every request it reads."""

    def __init__(
        self, script: Iterable[Reply] = (), then: Reply | Callable[[Received], Reply] = Reply()
    ) -> None:
        self.script = list(script)
        self.then = then
        self.received: list[Received] = []
        self.connections = 0
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._closing = asyncio.Event()

    @property
    def port(self) -> int:
        assert self._server is not None
        return int(self._server.sockets[0].getsockname()[1])

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    def ids(self) -> list[str]:
        return [r.webhook_id for r in self.received]

    async def start(self, port: int = 0) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", port)

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            self._closing.set()  # hanging answers end
            for writer in list(self._writers):  # idle keep-alive connections read EOF
                writer.close()
            await self._server.wait_closed()

    async def received_at_least(self, n: int, within: float = 5.0) -> list[Received]:
        await wait_for(lambda: len(self.received) >= n, within=within)
        return self.received

    def _answer(self, request: Received) -> Reply:
        if self.script:
            return self.script.pop(0)
        return self.then(request) if callable(self.then) else self.then

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self._writers.add(writer)
        try:
            while True:
                request = await _read_request(reader)
                if request is None:
                    return
                self.received.append(request)
                reply = self._answer(request)
                if await self._pause(reply.delay):
                    return
                head = [f"HTTP/1.1 {reply.status} X", f"content-length: {len(reply.body)}"]
                head += [f"{k}: {v}" for k, v in reply.headers.items()]
                writer.write(("\r\n".join(head) + "\r\n\r\n").encode())
                await writer.drain()
                if reply.body_delay:
                    writer.write(reply.body[:1])
                    await writer.drain()
                    if await self._pause(reply.body_delay):
                        return
                    writer.write(reply.body[1:])
                else:
                    writer.write(reply.body)
                await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            return
        finally:
            self._writers.discard(writer)
            writer.close()

    async def _pause(self, seconds: float) -> bool:
        """Wait `seconds`; answer True when the subscriber is closing instead."""
        if seconds <= 0:
            return False
        try:
            async with asyncio.timeout(seconds):
                await self._closing.wait()
        except TimeoutError:
            return False
        return True


async def _read_request(reader: asyncio.StreamReader) -> Received | None:
    line = await reader.readline()
    if not line:
        return None
    path = line.decode().split(" ")[1]
    headers: dict[str, str] = {}
    while (header := await reader.readline()) not in (b"\r\n", b"\n", b""):
        name, _, value = header.decode().partition(":")
        headers[name.strip().lower()] = value.strip()
    body = await reader.readexactly(int(headers.get("content-length", "0")))
    return Received(path, headers, body, time.time())


@contextlib.asynccontextmanager
async def subscriber(
    script: Iterable[Reply] = (), then: Reply | Callable[[Received], Reply] = Reply()
) -> AsyncIterator[Subscriber]:
    """A started subscriber, closed when the block ends."""
    sub = Subscriber(script, then)
    await sub.start()
    try:
        yield sub
    finally:
        await sub.close()
