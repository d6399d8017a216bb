"""Benchmark: one sweep over 1,000,000 stored jobs of which 1,000 are overdue, against a sweep with none, on
SQLite and on PostgreSQL.

Run: .venv/bin/python bench/sweep.py [--jobs 1000000] [--overdue 1000] [--runs 3] [--backends sqlite,postgres]
         [--targets relay,relay@/tmp/before]
Prints, per backend and target, the median milliseconds of a sweep, the CPU it took (the relay process's,
and on PostgreSQL the database's server processes'), and the peak Python memory (tracemalloc, in runs of its
own). Each sweep runs in a child process on a fresh copy of a populated database; the targets take turns
within each run, so that a machine shared with other work treats them alike. `relay@DIR` is the relay package
found in DIR (a checkout of another commit: `git archive HEAD~3 relay | tar -x -C /tmp/before`).
PostgreSQL: scratch databases on the server of RELAY_BENCH_POSTGRES (default: the local one), copied per
sweep with CREATE DATABASE ... TEMPLATE, all dropped at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import tracemalloc
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from _harness import POSTGRES_URL, postgres_admin, postgres_database_url

NOW = 2_000_000_000.0
COLUMNS = ("source", "job_id", "status", "created_at", "updated_at", "finished_at", "deadline")
# A running relay's pool has grown to its size under load; a cold one would time connecting, not sweeping.
PG_POOL = "pool_min=10&pool_max=10"
HERE = Path(__file__).resolve()


def rows(jobs: int, overdue: int) -> Iterator[tuple[Any, ...]]:
    """`jobs` jobs: most finished, a tenth open with later deadlines, `overdue` open past their deadline, and
    one more, overdue an hour before NOW, for the round that warms the relay up."""
    open_jobs = jobs // 10
    for i in range(jobs):
        if i < overdue:
            status, deadline, finished = "running", NOW - 10, None
        elif i < open_jobs:
            status, deadline, finished = "running", NOW + 3600 + i, None
        else:
            status, deadline, finished = "succeeded", NOW - 7200, NOW - 7300
        yield ("demo", f"job-{i}", status, NOW - 8000, NOW - 8000, finished, deadline)
    yield ("demo", "warm-up", "running", NOW - 8000, NOW - 8000, None, NOW - 7200)


# --- in the child: one target's relay -------------------------------------------------------------------


async def make_schema(url: str) -> None:
    from relay.store import open_store

    await (await open_store(url)).close()


def server_cpu_ns(pids: list[int]) -> int:
    """CPU time so far of these processes (/proc/PID/schedstat: nanoseconds on a CPU)."""
    return sum(int(Path(f"/proc/{pid}/schedstat").read_text().split()[0]) for pid in pids)


async def server_pids(url: str) -> list[int]:
    """The server processes of a PostgreSQL database's connections (the relay's pool), or none."""
    if not url.startswith("postgresql"):
        return []
    import asyncpg

    conn = await asyncpg.connect(POSTGRES_URL)
    try:
        name = url.rpartition("/")[2].partition("?")[0]
        return [
            row[0] for row in await conn.fetch("SELECT pid FROM pg_stat_activity WHERE datname = $1", name)
        ]
    finally:
        await conn.close()


async def sweep_once(url: str, trace_memory: bool) -> dict[str, float]:
    """Open the store, sweep an hour before NOW (one job is due then: a running relay has swept before, so its
    connections and statements are warm), then sweep at NOW: `run_once` until a round does nothing.

    tracemalloc slows every allocation (in the writer thread too), so time and memory are separate runs.
    """
    import httpx

    from relay.hub import Hub
    from relay.ingest import Ingestor
    from relay.settings import load_settings
    from relay.store import open_store
    from relay.sweeper import Sweeper
    from relay.tokens import Tokens

    settings = load_settings(
        None,
        environ={},
        overrides={"database": url, "secret_key": "bench", "api_keys": ["bench"], "retention_days": 3650.0},
    )
    store = await open_store(url)
    ingestor = Ingestor({}, store, Hub(10), Tokens("bench"))
    try:
        async with httpx.AsyncClient() as http:
            sweeper = Sweeper(settings, store, {}, ingestor, http)
            while await sweeper.run_once(NOW - 3600) > 0:  # the warm-up job
                pass
            pids = await server_pids(url)
            if trace_memory:
                tracemalloc.start()
            server, cpu, started = server_cpu_ns(pids), time.process_time(), time.perf_counter()
            handled = 0
            while (done := await sweeper.run_once(NOW)) > 0:  # the loop drains a backlog round after round
                handled += done
            elapsed = (time.perf_counter() - started) * 1000
            cpu, server = (time.process_time() - cpu) * 1000, (server_cpu_ns(pids) - server) / 1e6
            _, peak = tracemalloc.get_traced_memory() if trace_memory else (0, 0)
            tracemalloc.stop()
    finally:
        await store.close()
    return {
        "ms": elapsed,
        "cpu_ms": cpu,
        "server_cpu_ms": server,
        "peak_kib": peak / 1024,
        "handled": handled,
    }


def child(argv: list[str]) -> None:
    command, url = argv[0], argv[1]
    if command == "schema":
        asyncio.run(make_schema(url))
    else:
        print(json.dumps(asyncio.run(sweep_once(url, trace_memory=command == "memory"))))


# --- in the parent: databases, targets, runs ------------------------------------------------------------


def in_child(target: str, command: str, url: str) -> dict[str, float]:
    """Run `command` (schema, time, memory) on `url` in a child process with the target's relay."""
    env = dict(os.environ)
    if target.startswith("relay@"):
        env["PYTHONPATH"] = str(Path(target.removeprefix("relay@")).resolve())
    done = subprocess.run(
        [sys.executable, str(HERE), "--child", command, url],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode:
        raise RuntimeError(f"{target} {command} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout) if command != "schema" else {}


class Databases:
    """Populated databases of one backend, one per target and label, and fresh copies of them per sweep."""

    def __init__(self, backend: str, tmp: Path) -> None:
        self.backend, self.tmp = backend, tmp
        self.prefix = f"relay_bench_sweep_{uuid.uuid4().hex[:8]}"
        self.made: list[str] = []

    async def populate(self, target: str, label: str, jobs: int, overdue: int) -> str:
        """A database with `target`'s schema and the jobs; its name."""
        name = f"{self.prefix}_{len(self.made)}"
        self.made.append(name)
        if self.backend == "sqlite":
            path = self.tmp / f"{name}.db"
            in_child(target, "schema", f"sqlite:///{path}")
            conn = sqlite3.connect(path)
            conn.execute("PRAGMA synchronous = OFF")
            conn.executemany(
                f"INSERT INTO jobs ({', '.join(COLUMNS)}) VALUES (?, ?, ?, ?, ?, ?, ?)", rows(jobs, overdue)
            )
            conn.commit()
            conn.execute("ANALYZE")  # as a long-running database would have
            conn.close()
            return name
        import asyncpg

        await postgres_admin(f"CREATE DATABASE {name}")
        in_child(target, "schema", postgres_database_url(name))
        conn = await asyncpg.connect(postgres_database_url(name))
        try:
            await conn.copy_records_to_table("jobs", records=rows(jobs, overdue), columns=COLUMNS)
            await conn.execute("VACUUM ANALYZE jobs")  # what autovacuum does to a long-running database
        finally:
            await conn.close()
        return name

    async def copy(self, base: str) -> str:
        """A fresh copy of the database `base`; its URL."""
        name = f"{self.prefix}_{len(self.made)}"
        self.made.append(name)
        if self.backend == "sqlite":
            shutil.copyfile(self.tmp / f"{base}.db", self.tmp / f"{name}.db")
            return f"sqlite:///{self.tmp / name}.db"
        await postgres_admin(f"CREATE DATABASE {name} TEMPLATE {base}")
        return f"{postgres_database_url(name)}?{PG_POOL}"

    async def drop(self, url: str) -> None:
        if self.backend == "sqlite":
            with contextlib.suppress(FileNotFoundError):
                os.remove(url.removeprefix("sqlite:///"))
        else:
            await postgres_admin(
                f"DROP DATABASE IF EXISTS {url.rpartition('/')[2].partition('?')[0]} WITH (FORCE)"
            )

    async def drop_all(self) -> None:
        for name in reversed(self.made):
            await self.drop(
                f"sqlite:///{self.tmp / name}.db" if self.backend == "sqlite" else postgres_database_url(name)
            )


async def bench_backend(backend: str, tmp: Path, args: argparse.Namespace) -> dict[str, Any]:
    targets = args.targets.split(",")
    results: dict[str, dict[str, list[dict[str, float]]]] = {t: {"overdue": [], "none": []} for t in targets}
    databases = Databases(backend, tmp)
    try:
        for label, overdue in (("overdue", args.overdue), ("none", 0)):
            bases = {t: await databases.populate(t, label, args.jobs, overdue) for t in targets}
            for run in range(args.runs):
                for target in targets if run % 2 == 0 else targets[::-1]:
                    timed, traced = await databases.copy(bases[target]), await databases.copy(bases[target])
                    result = in_child(target, "time", timed)
                    result["peak_kib"] = in_child(target, "memory", traced)["peak_kib"]
                    results[target][label].append(result)
                    await databases.drop(timed)
                    await databases.drop(traced)
                    print(f"  {backend} {target} {label}: {json.dumps(result)}", file=sys.stderr)
    finally:
        await databases.drop_all()
    return {target: summarise(runs) for target, runs in results.items()}


def summarise(runs: dict[str, list[dict[str, float]]]) -> dict[str, Any]:
    summary: dict[str, Any] = {}
    for label, results in runs.items():
        summary[label] = {f"{key}_median": statistics.median(r[key] for r in results) for key in results[0]}
        summary[label]["ms_runs"] = [round(r["ms"], 1) for r in results]
    summary["ratio_ms"] = summary["overdue"]["ms_median"] / summary["none"]["ms_median"]
    return summary


async def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--jobs", type=int, default=1_000_000)
    parser.add_argument("--overdue", type=int, default=1_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--backends", default="sqlite,postgres", help="comma-separated: sqlite, postgres")
    parser.add_argument("--targets", default="relay", help="comma-separated: relay, relay@DIR")
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = parser.parse_args()
    summaries: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for backend in args.backends.split(","):
            summaries[backend] = await bench_backend(backend, Path(tmp), args)
    print(f"sweep over {args.jobs:,} jobs, {args.overdue:,} overdue, {args.runs} runs each (medians)")
    for backend, by_target in summaries.items():
        for target, summary in by_target.items():
            for label in ("overdue", "none"):
                s = summary[label]
                print(
                    f"  {backend:8} {target:24} {label:8} {s['ms_median']:7.1f} ms"
                    f"  cpu {s['cpu_ms_median']:6.1f} ms  server cpu {s['server_cpu_ms_median']:6.1f} ms"
                    f"  peak {s['peak_kib_median']:6.0f} KiB  handled {s['handled_median']:.0f}"
                    f"  runs {s['ms_runs']}"
                )
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"jobs": args.jobs, "overdue": args.overdue, **summaries}, indent=2))


if __name__ == "__main__":
    if sys.argv[1:2] == ["--child"]:
        child(sys.argv[2:])
    else:
        asyncio.run(main())
