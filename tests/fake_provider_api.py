"""Fake provider status APIs on 127.0.0.1 (the only mock: the provider's network edge).

Answers are set per path with the providers' documented payloads; every request is recorded, and the
requests still in flight are counted.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from tests.conftest import free_port, wait_for

__all__ = ["FakeProviderApi", "fake_provider_api"]


@dataclass
class FakeProviderApi:
    base_url: str = ""
    answers: dict[str, tuple[int, Any]] = field(default_factory=dict)
    hang: set[str] = field(default_factory=set)
    requests: list[tuple[str, str | None]] = field(default_factory=list)
    in_flight: int = 0

    def answer(self, path: str, body: Any, status: int = 200) -> None:
        self.answers[path] = (status, body)

    def paths(self) -> list[str]:
        return [path for path, _ in self.requests]

    async def _handle(self, request: Request) -> Response:
        path = request.url.path
        self.requests.append((path, request.headers.get("authorization")))
        self.in_flight += 1
        try:
            if path in self.hang:  # never answers; the relay's timeout must end it by hanging up
                while (await request.receive())["type"] != "http.disconnect":
                    pass
                return Response(status_code=499)
            status, body = self.answers.get(path, (404, {"detail": "not found"}))
            return JSONResponse(body, status)
        finally:
            self.in_flight -= 1


@asynccontextmanager
async def fake_provider_api() -> AsyncIterator[FakeProviderApi]:
    """Serve a FakeProviderApi on a free loopback port for the block."""
    fake = FakeProviderApi()
    app = Starlette(routes=[Route("/{path:path}", fake._handle, methods=["GET"])])
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", timeout_graceful_shutdown=0)
    )
    task = asyncio.create_task(server.serve())
    await wait_for(lambda: server.started, within=10)
    fake.base_url = f"http://127.0.0.1:{port}"
    try:
        yield fake
    finally:
        server.should_exit = True
        server.force_exit = True
        await task
