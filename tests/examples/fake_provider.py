"""A provider's submit API faked on 127.0.0.1 (over HTTPS when given a TLS context): the only stand-in in the
example tests. Each request goes to the test's handler, which checks it and answers the provider's documented
JSON; what the provider does afterwards (its webhooks) runs as tracked tasks, awaited when the server stops.

A plain HTTP/1.1 server on asyncio, one request per connection: it starts and stops in a millisecond.
"""

from __future__ import annotations

import asyncio
import json
import ssl
import traceback
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from types import TracebackType
from typing import Any

__all__ = ["FakeProvider", "Request"]


@dataclass(frozen=True)
class Request:
    """What the example sent: `target` is the path with its query string; header names are lower case."""

    method: str
    target: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


Handler = Callable[[Request], Awaitable[tuple[int, Any]]]


class FakeProvider:
    """Serves `handler` on a free loopback port; an error in the handler answers 500 and fails the test at
    exit (the example would only see a 500, so the reason is kept here). Check how the example ended inside
    the block: a failure there stops what the provider still had to do, which would wait out its bound."""

    def __init__(self, handler: Handler, tls: ssl.SSLContext | None = None) -> None:
        self._handler = handler
        self._tls = tls
        self._server: asyncio.Server | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self.requests: list[Request] = []
        self.errors: list[str] = []

    @property
    def host(self) -> str:
        """`127.0.0.1:PORT`, what an SDK that takes a host (fal_client) is given."""
        assert self._server is not None
        return f"127.0.0.1:{self._server.sockets[0].getsockname()[1]}"

    @property
    def base_url(self) -> str:
        return f"{'https' if self._tls else 'http'}://{self.host}"

    def later(self, work: Coroutine[Any, Any, None]) -> None:
        """Run what the provider does after answering (its webhooks); awaited, errors and all, at exit."""
        self._tasks.append(asyncio.create_task(work))

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            request = await _read_request(reader)
            self.requests.append(request)
            try:
                status, body = await self._handler(request)
            except Exception:
                self.errors.append(traceback.format_exc())
                status, body = 500, {"detail": "the fake provider refused the request (see the test)"}
            payload = json.dumps(body).encode()
            writer.write(
                f"HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {len(payload)}\r\n"
                "connection: close\r\n\r\n".encode()
                + payload
            )
            await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError, ssl.SSLError):
            return
        finally:
            writer.close()

    async def __aenter__(self) -> FakeProvider:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0, ssl=self._tls)
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        assert self._server is not None
        self._server.close()
        if exc is not None:  # the test already failed: what the provider still had to do no longer matters
            for task in self._tasks:
                task.cancel()
        outcomes = await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._server.wait_closed()
        assert not self.errors, self.errors[0]  # why the provider refused: the first cause of any failure
        if exc is None:
            for outcome in outcomes:
                if isinstance(outcome, BaseException):
                    raise outcome


async def _read_request(reader: asyncio.StreamReader) -> Request:
    """One request: its head, then a body of `content-length` bytes (the SDKs send no chunked bodies)."""
    request_line, *lines = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
    method, target, _ = request_line.split(" ", 2)
    headers = {
        name.strip().lower(): value.strip() for name, _, value in (ln.partition(":") for ln in lines if ln)
    }
    body = await reader.readexactly(int(headers.get("content-length", "0")))
    return Request(method, target, headers, body)
