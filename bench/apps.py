"""The baselines relay is measured against: minimal Starlette apps on relay's server stack.

  bare           POST /hooks/{source}: reads the body and answers 200, nothing else.
  verify-insert  POST /hooks/{source}: Standard Webhooks HMAC verify, then one aiosqlite INSERT and COMMIT
                 (WAL, synchronous=FULL like relay's default), then 200.
  longpoll       GET /v1/jobs/{source}/{job_id}?wait=S: holds the request on an asyncio.Event until woken or
                 S seconds pass; GET /held answers how many are held.
  relay-nostore  (diagnostic) relay with its store's ingest answering at once: the HTTP path alone.

Run: python bench/apps.py NAME --port P [--db PATH]. Served exactly as `relay serve` serves relay:
uvicorn with uvloop and httptools, no access log.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import hashlib
import hmac
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiosqlite
import uvicorn
from _harness import SECRET
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

_ACCEPTED = b'{"accepted":true}'


async def bare(request: Request) -> Response:
    await request.body()
    return Response(_ACCEPTED, media_type="application/json")


def verify_insert_app(db_path: str) -> Starlette:
    key = base64.b64decode(SECRET.removeprefix("whsec_"))
    state: dict[str, Any] = {}

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        db = await aiosqlite.connect(db_path)
        await db.execute("PRAGMA journal_mode = WAL")
        await db.execute("PRAGMA synchronous = FULL")
        await db.execute(
            "CREATE TABLE IF NOT EXISTS callbacks (id INTEGER PRIMARY KEY, delivery_id TEXT NOT NULL UNIQUE,"
            " received_at REAL NOT NULL, body BLOB NOT NULL)"
        )
        await db.commit()
        state["db"] = db
        yield
        await db.close()

    async def receive(request: Request) -> Response:
        body = await request.body()
        headers = request.headers
        msg_id, ts, signature = (
            headers.get("webhook-id", ""),
            headers.get("webhook-timestamp", ""),
            headers.get("webhook-signature", ""),
        )
        now = time.time()
        if not ts.isdigit() or abs(now - int(ts)) > 300:
            return Response(status_code=401)
        expected = base64.b64encode(
            hmac.new(key, b"%s.%s.%s" % (msg_id.encode(), ts.encode(), body), hashlib.sha256).digest()
        )
        if not any(
            hmac.compare_digest(expected, entry[3:].encode())
            for entry in signature.split(" ")
            if entry[:3] == "v1,"
        ):
            return Response(status_code=401)
        db = state["db"]
        await db.execute(
            "INSERT INTO callbacks (delivery_id, received_at, body) VALUES (?, ?, ?)", (msg_id, now, body)
        )
        await db.commit()
        return Response(_ACCEPTED, media_type="application/json")

    return Starlette(routes=[Route("/hooks/{source}", receive, methods=["POST"])], lifespan=lifespan)


def longpoll_app() -> Starlette:
    held: dict[str, asyncio.Event] = {}

    async def hold(request: Request) -> Response:
        wait = float(request.query_params.get("wait", "30"))
        event = held[request.path_params["job_id"]] = asyncio.Event()
        try:
            async with asyncio.timeout(wait):
                await event.wait()
        except TimeoutError:
            pass
        finally:
            del held[request.path_params["job_id"]]
        return Response(b"{}", media_type="application/json")

    async def count(request: Request) -> Response:
        return Response(str(len(held)).encode())

    return Starlette(
        routes=[Route("/v1/jobs/{source}/{job_id}", hold, methods=["GET"]), Route("/held", count)]
    )


def relay_nostore_app(config: str) -> Starlette:
    """relay itself, its store's `ingest` answering at once without touching the database: what the HTTP path
    (routing, body read, verify, parse, metrics, answer) costs on its own. A diagnostic, not a product."""
    from relay.app import create_app
    from relay.models import Callback, IngestOutcome, Job
    from relay.settings import load_settings
    from relay.store.sqlite import SQLiteStore

    async def ingest(
        self: SQLiteStore,
        source: str,
        cb: Callback,
        now: float,
        timeout_s: float,
        reconcile_after_s: float | None = None,
    ) -> IngestOutcome:
        job = Job(
            source, cb.job_id, cb.status, cb.result, cb.error, False, {}, now, now, now, now + timeout_s, 1
        )
        return IngestOutcome(job, duplicate=False, changed=True)

    SQLiteStore.ingest = ingest  # type: ignore[method-assign]
    return create_app(load_settings(Path(config)))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("app", choices=["bare", "verify-insert", "longpoll", "relay-nostore"])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--db", default="min.db")
    parser.add_argument("--config", default="relay.toml", help="relay-nostore: the relay config")
    args = parser.parse_args()
    if args.app == "bare":
        app = Starlette(routes=[Route("/hooks/{source}", bare, methods=["POST"])])
    elif args.app == "verify-insert":
        app = verify_insert_app(args.db)
    elif args.app == "relay-nostore":
        app = relay_nostore_app(args.config)
    else:
        app = longpoll_app()
    options: dict[str, Any] = {
        "host": "127.0.0.1",
        "port": args.port,
        "loop": "uvloop",
        "http": "httptools",
        "access_log": False,
        "timeout_graceful_shutdown": 5,
        "log_level": "info",
    }
    if args.app == "relay-nostore":  # served as `relay serve` serves relay, collector tuning included
        from relay.server import RelayServer

        RelayServer(uvicorn.Config(app, **options), app, tune_gc=True).run()
    else:
        uvicorn.run(app, **options)


if __name__ == "__main__":
    main()
