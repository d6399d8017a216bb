"""Benchmark: one sweep over 1,000,000 stored jobs of which 1,000 are overdue, against a sweep with none.

Run: .venv/bin/python bench/sweep.py [--jobs 1000000] [--overdue 1000] [--runs 3]
Prints milliseconds and peak Python memory (tracemalloc) per sweep, and the ratio of the two.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sqlite3
import statistics
import tempfile
import time
import tracemalloc
from pathlib import Path

import httpx

from relay.hub import Hub
from relay.ingest import Ingestor
from relay.settings import load_settings
from relay.store.sqlite import SQLiteStore
from relay.sweeper import Sweeper
from relay.tokens import Tokens

NOW = 2_000_000_000.0
SYNC = "full"


def populate(path: Path, jobs: int, overdue: int) -> None:
    """Write `jobs` jobs straight into a fresh relay database: most finished, some open with later deadlines,
    and `overdue` open ones past their deadline."""
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = OFF")
    conn.commit()
    open_jobs = jobs // 10  # a tenth still running, the rest finished
    rows = []
    for i in range(jobs):
        if i < overdue:
            status, deadline, finished = "running", NOW - 10, None
        elif i < open_jobs:
            status, deadline, finished = "running", NOW + 3600 + i, None
        else:
            status, deadline, finished = "succeeded", NOW - 7200, NOW - 7300
        rows.append(("demo", f"job-{i}", status, NOW - 8000, NOW - 8000, finished, deadline))
    conn.executemany(
        "INSERT INTO jobs (source, job_id, status, created_at, updated_at, finished_at, deadline)"
        " VALUES (?, ?, ?, ?, ?, ?, ?)",
        rows,
    )
    conn.commit()
    conn.close()


async def sweep_once(path: Path, trace_memory: bool) -> tuple[float, int, int]:
    """Open the store, run one sweep at NOW; answer (ms, peak traced bytes, jobs handled).

    tracemalloc slows every allocation (in the writer thread too), so time and memory are separate runs.
    """
    settings = load_settings(
        None,
        environ={},
        overrides={
            "database": f"sqlite:///{path}",
            "secret_key": "bench",
            "api_keys": ["bench"],
            "retention_days": 3650.0,
        },
    )
    store = await SQLiteStore.open(str(path), synchronous=SYNC)
    hub = Hub(10)
    ingestor = Ingestor({}, store, hub, Tokens("bench"))
    async with httpx.AsyncClient() as http:
        sweeper = Sweeper(settings, store, {}, ingestor, http)
        if trace_memory:
            tracemalloc.start()
        started = time.perf_counter()
        handled = 0
        while (done := await sweeper.run_once(NOW)) > 0:  # the loop drains a backlog round after round
            handled += done
        elapsed = (time.perf_counter() - started) * 1000
        _, peak = tracemalloc.get_traced_memory() if trace_memory else (0, 0)
        tracemalloc.stop()
    await store.close()
    return elapsed, peak, handled


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--jobs", type=int, default=1_000_000)
    parser.add_argument("--overdue", type=int, default=1_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = parser.parse_args()
    results: dict[str, list[tuple[float, int, int]]] = {"overdue": [], "none": []}
    with tempfile.TemporaryDirectory() as tmp:
        for label, overdue in (("overdue", args.overdue), ("none", 0)):
            base = Path(tmp) / f"{label}.db"
            store = await SQLiteStore.open(str(base))  # creates the schema
            await store.close()
            populate(base, args.jobs, overdue)
            for run in range(args.runs):
                timed, traced = (Path(tmp) / f"{label}-{run}-{kind}.db" for kind in ("time", "memory"))
                for copy in (timed, traced):
                    copy.write_bytes(base.read_bytes())
                elapsed, _, handled = await sweep_once(timed, trace_memory=False)
                _, peak, _ = await sweep_once(traced, trace_memory=True)
                results[label].append((elapsed, peak, handled))
                timed.unlink()
                traced.unlink()
    summary = {}
    for label, runs in results.items():
        summary[label] = {
            "ms_median": statistics.median(r[0] for r in runs),
            "peak_kib_median": statistics.median(r[1] for r in runs) / 1024,
            "handled": runs[0][2],
        }
    summary["ratio_ms"] = summary["overdue"]["ms_median"] / summary["none"]["ms_median"]  # type: ignore[assignment]
    print(f"sweep over {args.jobs:,} jobs, {args.runs} runs each (medians)")
    for label in ("overdue", "none"):
        s = summary[label]
        ms, kib, handled = s["ms_median"], s["peak_kib_median"], s["handled"]
        print(f"  {label:8} {ms:9.1f} ms  peak {kib:8.0f} KiB  handled {handled}")
    print(f"  overdue/none time ratio: {summary['ratio_ms']:.1f}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"jobs": args.jobs, "overdue": args.overdue, **summary}, indent=2))


if __name__ == "__main__":
    asyncio.run(main())
