"""Fake provider status APIs on 127.0.0.1 (the only mock: the provider's network edge).

Answers are set per path with the providers' documented payloads; every request is recorded, and the
requests still in flight are counted. A plain HTTP/1.1 server on asyncio (keep-alive; any method, a request
body read and dropped): it starts and stops in a millisecond, where uvicorn's shutdown takes 0.2 s of every
test that asks a provider. An answer is set per path, for whatever method asks it; `calls` says which did.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote, urlsplit

__all__ = ["FakeProviderApi", "fake_provider_api"]


@dataclass
class FakeProviderApi:
    base_url: str = ""
    answers: dict[str, tuple[int, Any]] = field(default_factory=dict)
    hang: set[str] = field(default_factory=set)
    requests: list[tuple[str, str | None]] = field(default_factory=list)
    calls: list[tuple[str, str]] = field(default_factory=list)  # (method, path) of each request
    in_flight: int = 0
    _writers: set[asyncio.StreamWriter] = field(default_factory=set, repr=False)

    def answer(self, path: str, body: Any, status: int = 200) -> None:
        self.answers[path] = (status, body)

    def paths(self) -> list[str]:
        return [path for path, _ in self.requests]

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)
        try:
            while True:  # one request after another on a kept-alive connection, until the client hangs up
                method, path, authorization, length = _parse(await reader.readuntil(b"\r\n\r\n"))
                await reader.readexactly(length)
                self.requests.append((path, authorization))
                self.calls.append((method, path))
                self.in_flight += 1
                try:
                    if path in self.hang:  # never answers; the relay's timeout must end it by hanging up
                        await reader.read()
                        return
                    status, body = self.answers.get(path, (404, {"detail": "not found"}))
                    writer.write(_response(status, body))
                    await writer.drain()
                finally:
                    self.in_flight -= 1
        except (ConnectionError, asyncio.IncompleteReadError):
            return
        finally:
            self._writers.discard(writer)
            writer.close()


def _parse(head: bytes) -> tuple[str, str, str | None, int]:
    """The method, the decoded path, the authorization header and the body's length of a request's head."""
    request_line, *lines = head.decode("latin-1").split("\r\n")
    method, target, _ = request_line.split(" ", 2)
    headers = {
        name.strip().lower(): value.strip() for name, _, value in (ln.partition(":") for ln in lines if ln)
    }
    length = int(headers.get("content-length", "0"))
    return method, unquote(urlsplit(target).path), headers.get("authorization"), length


def _response(status: int, body: Any) -> bytes:
    """A JSON answer, encoded as Starlette's JSONResponse encodes it."""
    payload = json.dumps(body, ensure_ascii=False, allow_nan=False, separators=(",", ":")).encode()
    head = f"HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {len(payload)}\r\n\r\n"
    return head.encode() + payload


@asynccontextmanager
async def fake_provider_api() -> AsyncIterator[FakeProviderApi]:
    """Serve a FakeProviderApi on a free loopback port for the block."""
    fake = FakeProviderApi()
    server = await asyncio.start_server(fake._serve, "127.0.0.1", 0)
    fake.base_url = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"
    try:
        yield fake
    finally:
        server.close()
        for writer in list(fake._writers):  # kept-alive and hanging connections end too
            writer.close()
        await server.wait_closed()
