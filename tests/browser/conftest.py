"""Browser fixtures: Chromium from the system (/usr/bin/chromium) driven by Playwright, and a page server.

Playwright's own browser downloads (`playwright install`) are never used: only Chromium from the OS packages.
Without Chromium or Playwright the browser tests skip, saying what to install; with CI set, or
RELAY_BROWSER_TESTS=required, they fail instead, so a runner without a browser cannot pass them unseen.
"""

from __future__ import annotations

import asyncio
import importlib.util
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
import uvicorn
from starlette.types import Receive, Scope, Send

from tests.conftest import free_port, wait_for

if TYPE_CHECKING:
    from playwright.async_api import Browser

CHROMIUM = Path("/usr/bin/chromium")


def _missing() -> str | None:
    """Why the browser tests cannot run here, or None when they can."""
    if importlib.util.find_spec("playwright") is None:
        return "Playwright for Python is not installed: .venv/bin/pip install -e '.[dev]'"
    if not CHROMIUM.exists():
        return f"no Chromium at {CHROMIUM}: apt-get install -y chromium (never `playwright install`)"
    return None


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    """Headless Chromium; skips (fails in CI) when it cannot be started."""
    missing = _missing()
    if missing is not None:
        message = f"BROWSER TESTS NOT RUN: {missing}"
        if os.environ.get("CI") or os.environ.get("RELAY_BROWSER_TESTS") == "required":
            pytest.fail(message)
        pytest.skip(message)
    from playwright.async_api import async_playwright

    async with async_playwright() as playwright:
        # /dev/shm is small in containers; the sandbox is off by Playwright's default (CI runs as root).
        launched = await playwright.chromium.launch(
            executable_path=str(CHROMIUM), args=["--disable-dev-shm-usage"]
        )
        try:
            yield launched
        finally:
            await launched.close()


@asynccontextmanager
async def serve_page(html: str) -> AsyncIterator[str]:
    """Serve `html` at / on a free loopback port (its own origin) until the block ends; yields the origin."""
    body = html.encode()

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        assert scope["type"] == "http"
        headers = [(b"content-type", b"text/html; charset=utf-8"), (b"content-length", b"%d" % len(body))]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off")
    )
    task = asyncio.create_task(server.serve())
    await wait_for(lambda: server.started or task.done(), within=10)
    if task.done():
        task.result()
        raise RuntimeError("the page server did not start")
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task
