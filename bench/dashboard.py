"""Benchmark: time to first byte of the dashboard's jobs page, signed in, with 1,000,000 jobs stored, on
SQLite and on PostgreSQL, against `GET /v1/jobs?limit=50` and `/healthz` on the same relay in the same run.

Run: .venv/bin/python bench/dashboard.py [--jobs 1000000] [--requests 300] [--backends sqlite,postgres]
Pages: the first page, `status=failed`, `source=fal` (1% of jobs), `source=fal&status=failed`, and a page
deep in the cursor (below the middle job). Jobs are spread over three sources and every status
(`dashboard_rows`): most succeeded, as in use. Requests take turns one at a time on one keep-alive
connection per path, after a warm-up; p50/p99 of the time from writing the request to its first byte.
PostgreSQL: a scratch database on the server of RELAY_BENCH_POSTGRES (default: the local one), dropped at the
end.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import sqlite3
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any, cast

from _harness import API_KEY, HOST, RESULTS, Connection, options, percentile, scratch_postgres, serve
from sweep import COLUMNS, NOW

# Of every 100 jobs: the source, then the status (succeeded most, as in use); the status cycle shifts by one
# each hundred jobs, so that every source has jobs in every status.
SOURCES = ("demo",) * 90 + ("replicate",) * 9 + ("fal",)
STATUSES = ("succeeded",) * 91 + ("failed",) * 3 + ("running",) * 3 + ("pending", "canceled", "timed_out")
SESSION_MAX_AGE_S = 3600.0


def dashboard_rows(jobs: int) -> Iterator[tuple[Any, ...]]:
    """`jobs` jobs in `COLUMNS` (bench/sweep.py's), created one a second up to NOW."""
    for i in range(jobs):
        status = STATUSES[(i * 7 + i // 100) % len(STATUSES)]
        at = NOW - jobs + i
        finished = at + 5 if status not in ("pending", "running") else None
        deadline = at + 3600 if finished is None else None
        yield (SOURCES[i % len(SOURCES)], f"job-{i}", status, at, at + 5, finished, deadline)


async def populate(url: str, jobs: int) -> None:
    """Relay's schema at `url` (SQLite or PostgreSQL), then `jobs` jobs in bulk (as bench/sweep.py does)."""
    from relay.store import open_store

    await (await open_store(url)).close()
    if url.startswith("sqlite"):
        conn = sqlite3.connect(url.removeprefix("sqlite:///"))
        conn.execute("PRAGMA synchronous = OFF")
        placeholders = ", ".join("?" for _ in COLUMNS)
        conn.executemany(
            f"INSERT INTO jobs ({', '.join(COLUMNS)}) VALUES ({placeholders})", dashboard_rows(jobs)
        )
        conn.commit()
        conn.execute("ANALYZE")  # as a long-running database would have
        conn.close()
        return
    import asyncpg

    pg = await asyncpg.connect(url)
    try:
        await pg.copy_records_to_table("jobs", records=dashboard_rows(jobs), columns=COLUMNS)
        await pg.execute("VACUUM ANALYZE jobs")  # what autovacuum does to a long-running database
    finally:
        await pg.close()


@contextlib.asynccontextmanager
async def database(backend: str, workdir: Path) -> AsyncIterator[str]:
    if backend == "sqlite":
        yield f"sqlite:///{workdir / 'relay.db'}"
    else:
        async with scratch_postgres("dashboard") as url:
            yield url


class FirstByte(Connection):
    """A keep-alive connection that also notes when the first byte of each answer came."""

    first_byte_at = 0.0

    def send(self, raw: bytes) -> asyncio.Future[tuple[int, bytes, float]]:
        self.first_byte_at = 0.0
        return super().send(raw)

    def data_received(self, data: bytes) -> None:
        if not self.first_byte_at:
            self.first_byte_at = time.perf_counter()
        super().data_received(data)


def session_cookie() -> str:
    """The cookie the sign-in form sets for API_KEY (same secret_key as bench/_harness.py's relay config)."""
    from relay.ui.session import COOKIE, Sessions

    sessions = Sessions("bench-secret-key", (API_KEY,), SESSION_MAX_AGE_S)
    return f"{COOKIE}={sessions.issue(API_KEY, time.time())}"


def deep_cursor(jobs: int) -> str:
    """The cursor of a page starting below the middle job (the row ids are 1..jobs, in insertion order)."""
    from relay.routes.common import next_cursor

    cursor = next_cursor([jobs // 2], 1)
    assert cursor is not None
    return cursor


def requests(jobs: int) -> dict[str, bytes]:
    cookie = session_cookie()

    def ui(query: str) -> bytes:
        return f"GET /ui/{query} HTTP/1.1\r\nhost: {HOST}\r\ncookie: {cookie}\r\n\r\n".encode()

    return {
        "healthz": f"GET /healthz HTTP/1.1\r\nhost: {HOST}\r\n\r\n".encode(),
        "api /v1/jobs?limit=50": (
            f"GET /v1/jobs?limit=50 HTTP/1.1\r\nhost: {HOST}\r\nauthorization: Bearer {API_KEY}\r\n\r\n"
        ).encode(),
        "ui jobs": ui(""),
        "ui status=failed": ui("?status=failed"),
        "ui source=fal": ui("?source=fal"),
        "ui source=fal&status=failed": ui("?source=fal&status=failed"),
        "ui deep cursor": ui(f"?cursor={deep_cursor(jobs)}"),
    }


async def measure(port: int, jobs: int, count: int) -> dict[str, dict[str, float]]:
    """Each path's p50/p99 time to first byte (ms), the paths taking turns."""
    wanted = requests(jobs)
    conns = {name: cast(FirstByte, await FirstByte.open(port)) for name in wanted}
    times: dict[str, list[float]] = {name: [] for name in wanted}
    sizes: dict[str, int] = {}
    try:
        for round_ in range(count + 20):  # the first 20 warm up
            for name, raw in wanted.items():
                conn = conns[name]
                started = time.perf_counter()
                status, body, _ = await conn.request(raw)
                assert status == 200, (name, status, body[:300])
                if round_ >= 20:
                    times[name].append((conn.first_byte_at - started) * 1000)
                sizes[name] = len(body)
    finally:
        for conn in conns.values():
            conn.close()
    return {
        name: {"p50_ms": percentile(t, 50), "p99_ms": percentile(t, 99), "bytes": sizes[name]}
        for name, t in times.items()
    }


async def bench_backend(backend: str, args: argparse.Namespace) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        async with database(backend, workdir) as url:
            started = time.perf_counter()
            await populate(url, args.jobs)
            populated_s = time.perf_counter() - started
            with serve("relay", workdir, None if backend == "sqlite" else url, ui=True) as server:
                load = os.getloadavg()[0]
                results = await measure(server.port, args.jobs, args.requests)
    return {"populate_s": round(populated_s, 1), "load_1m": round(load, 2), "paths": results}


async def bench(args: argparse.Namespace) -> None:
    summaries = {backend: await bench_backend(backend, args) for backend in args.backends.split(",")}
    print(f"dashboard with {args.jobs:,} jobs, {args.requests} requests per path, time to first byte")
    for backend, summary in summaries.items():
        print(f"  {backend} (populated in {summary['populate_s']} s, load average {summary['load_1m']})")
        for name, r in summary["paths"].items():
            print(f"    {name:30} p50 {r['p50_ms']:6.2f} ms  p99 {r['p99_ms']:6.2f} ms  {r['bytes']:6} B")
    path = args.json or RESULTS / "dashboard.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"jobs": args.jobs, "requests": args.requests, **summaries}, indent=2))


if __name__ == "__main__":
    parser = options(__doc__, runs=1)
    parser.add_argument("--jobs", type=int, default=1_000_000)
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--backends", default="sqlite,postgres", help="comma-separated: sqlite, postgres")
    from _harness import main

    main(parser, bench)
