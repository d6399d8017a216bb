"""Diagnostic: CPU per callback through the ASGI app alone, with no HTTP server, socket or load generator.

The server benchmark (bench/ingest.py) is the figure that counts; this one isolates what the app itself costs,
which the server figures hide under uvicorn's parsing and the socket calls, and it is far steadier on a noisy
machine. Each request is the same signed final callback for a unique job as in bench/ingest.py, driven by 64
concurrent coroutines calling the app directly; the lifespan runs, so relay commits through its real store.

  bare      the bare Starlette endpoint of bench/apps.py
  nostore   relay with its store answering at once (the HTTP path alone)
  relay     relay, storing in a new SQLite database

Run: .venv/bin/python bench/asgi_cpu.py relay [--requests 10000] [--rounds 5] [--profile]
Prints the minimum and median over the rounds of process CPU (all threads) per request; --profile prints
a cProfile of one round instead (which slows every Python call about twofold).
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import pstats
import statistics
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import uvloop
from _harness import signed_callback, write_relay_config

App = Callable[
    [dict[str, Any], Callable[[], Awaitable[Any]], Callable[[Any], Awaitable[None]]], Awaitable[None]
]


def _requests(count: int) -> list[tuple[list[tuple[bytes, bytes]], bytes]]:
    """Signed callbacks as (ASGI headers, body), from the same bytes bench/ingest.py sends."""
    built = []
    for _ in range(count):
        head, _, body = signed_callback(uuid.uuid4().hex).partition(b"\r\n\r\n")
        lines = head.split(b"\r\n")[1:]  # after the request line
        headers = [
            (name.strip().lower(), value.strip()) for name, _, value in (ln.partition(b":") for ln in lines)
        ]
        built.append((headers, body))
    return built


async def _drive(app: App, requests: list[tuple[list[tuple[bytes, bytes]], bytes]], concurrency: int) -> None:
    pending = iter(requests)

    async def one(headers: list[tuple[bytes, bytes]], body: bytes) -> None:
        scope = {
            "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST",
            "scheme": "http", "path": "/hooks/demo", "raw_path": b"/hooks/demo", "query_string": b"",
            "root_path": "", "headers": headers, "client": ("127.0.0.1", 1), "server": ("127.0.0.1", 8000),
            "state": {},
        }  # fmt: skip
        messages = [{"type": "http.request", "body": body, "more_body": False}]
        statuses = []

        async def receive() -> Any:
            if messages:
                return messages.pop()
            await asyncio.Event().wait()  # no disconnect while the app works

        async def send(message: Any) -> None:
            if message["type"] == "http.response.start":
                statuses.append(message["status"])

        await app(scope, receive, send)
        if statuses != [200]:
            raise RuntimeError(f"answered {statuses}")

    async def worker() -> None:
        for headers, body in pending:
            await one(headers, body)

    await asyncio.gather(*(worker() for _ in range(concurrency)))


async def _bench(args: argparse.Namespace) -> None:
    import apps
    from starlette.applications import Starlette
    from starlette.routing import Route

    config = write_relay_config(Path(tempfile.mkdtemp()))
    if args.target == "bare":
        app: Any = Starlette(routes=[Route("/hooks/{source}", apps.bare, methods=["POST"])])
    elif args.target == "nostore":
        app = apps.relay_nostore_app(str(config))
    else:
        from relay.app import create_app
        from relay.settings import load_settings

        app = create_app(load_settings(config))
    started, stopping = asyncio.Event(), asyncio.Event()
    events = [{"type": "lifespan.startup"}]

    async def receive() -> Any:
        if events:
            return events.pop()
        await stopping.wait()
        return {"type": "lifespan.shutdown"}

    async def send(message: Any) -> None:
        if message["type"] == "lifespan.startup.complete":
            started.set()

    lifespan = asyncio.create_task(
        app({"type": "lifespan", "asgi": {"version": "3.0"}, "state": {}}, receive, send)
    )
    await started.wait()
    await _drive(app, _requests(2000), args.concurrency)  # warm-up
    per_request = []
    for _ in range(1 if args.profile else args.rounds):
        requests = _requests(args.requests)
        profiler = cProfile.Profile() if args.profile else None
        cpu = time.process_time()
        if profiler:
            profiler.enable()
        await _drive(app, requests, args.concurrency)
        if profiler:
            profiler.disable()
        per_request.append((time.process_time() - cpu) / args.requests * 1e6)
        if profiler:
            pstats.Stats(profiler).sort_stats("tottime").print_stats(40)
    low, middle = min(per_request), statistics.median(per_request)
    print(f"{args.target}: CPU per request min {low:.1f} µs, median {middle:.1f} µs")
    stopping.set()
    await lifespan


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("target", choices=["bare", "nostore", "relay"])
    parser.add_argument("--requests", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--profile", action="store_true")
    uvloop.run(_bench(parser.parse_args()))


if __name__ == "__main__":
    main()
