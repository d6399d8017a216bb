"""Benchmark: what `AsyncClient.wait()` adds over a raw long-poll request, from a final callback's 200 to the
waiter having the finished job in hand.

Two waiters, measured in the same rounds against the same `relay serve`:

  httpx     `httpx.AsyncClient.get("/v1/jobs/demo/{id}?wait=60")` and `response.json()`: the raw request
  client    `relay.client.AsyncClient.wait("demo", id, timeout=120)`: its long-poll loop, the answer parsed
            into a `Job` (times as datetimes)

Two shapes: `one` (one waiter, one job, a round at a time) and `N concurrent` (N waiters on N jobs held at
once through one client, as one process serving many users does; the N callbacks are then sent one after
another on one connection, and each job's latency is its waiter's return minus its own callback's 200). A
round starts its waiters, waits until relay reports them all held (its `relay_waiters` gauge), then sends the
callbacks. The two waiters take turns round by round, so a slow spell of the machine hits both alike.

Run: .venv/bin/python bench/client_wait.py [--runs 3] [--rounds 200] [--waiters 1000] [--concurrent-rounds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
from _harness import (
    API_KEY,
    Connection,
    main,
    median,
    options,
    percentile,
    relay_waiters,
    serve,
    signed_callback,
    until,
    write_json,
)

from relay.client import AsyncClient

WAITERS = ("httpx", "client")
WaitFor = Callable[[str], Awaitable[float]]  # waits for a job to succeed; answers perf_counter() at the end


def _httpx_waiter(http: httpx.AsyncClient) -> WaitFor:
    async def wait_for(job_id: str) -> float:
        response = await http.get(f"/v1/jobs/demo/{job_id}", params={"wait": "60"})
        doc = response.json()
        done = time.perf_counter()
        if response.status_code != 200 or doc["status"] != "succeeded":
            raise RuntimeError(f"unexpected answer {response.status_code}: {response.text[:200]}")
        return done

    return wait_for


def _client_waiter(client: AsyncClient) -> WaitFor:
    async def wait_for(job_id: str) -> float:
        job = await client.wait("demo", job_id, timeout=120)
        done = time.perf_counter()
        if job.status != "succeeded":
            raise RuntimeError(f"unexpected job {job}")
        return done

    return wait_for


async def _round(wait_for: WaitFor, count: int, sender: Connection, probe: Connection) -> list[float]:
    """`count` waiters on as many new jobs, then their callbacks; the latencies in seconds."""
    jobs = [uuid.uuid4().hex for _ in range(count)]
    waiting = [asyncio.ensure_future(wait_for(job)) for job in jobs]

    async def all_held() -> bool:
        return await relay_waiters(probe) >= count

    await until(all_held, within=60)
    acked_at = []
    for job in jobs:
        status, body, at = await sender.request(signed_callback(job))
        if status != 200:
            raise RuntimeError(f"callback answered {status}: {body[:200]!r}")
        acked_at.append(at)
    done_at = await asyncio.gather(*waiting)
    return [done - acked for done, acked in zip(done_at, acked_at, strict=True)]


async def one_run(run_no: int, args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    with serve("relay", workdir / f"run-{run_no}") as server:
        url = f"http://127.0.0.1:{server.port}"
        limits = httpx.Limits(max_connections=None, max_keepalive_connections=100)
        auth = {"authorization": f"Bearer {API_KEY}"}
        async with (
            httpx.AsyncClient(base_url=url, headers=auth, limits=limits, timeout=90) as http,
            AsyncClient(url, api_key=API_KEY) as client,
        ):
            waiters = {"httpx": _httpx_waiter(http), "client": _client_waiter(client)}
            sender, probe = await Connection.open(server.port), await Connection.open(server.port)
            for _ in range(10):  # warm up both paths
                for wait_for in waiters.values():
                    await _round(wait_for, 1, sender, probe)
            samples: dict[str, dict[str, list[float]]] = {name: {} for name in waiters}
            shapes = [
                ("one", 1, args.rounds),
                (f"{args.waiters} concurrent", args.waiters, args.concurrent_rounds),
            ]
            for shape, count, rounds in shapes:
                for _ in range(rounds):
                    for name, wait_for in waiters.items():
                        samples[name].setdefault(shape, []).extend(
                            await _round(wait_for, count, sender, probe)
                        )
            sender.close()
            probe.close()
    return {
        name: {shape: _stats(values) for shape, values in by_shape.items()}
        for name, by_shape in samples.items()
    }


def _stats(samples: list[float]) -> dict[str, float]:
    return {
        "p50_ms": percentile(samples, 50) * 1000,
        "p99_ms": percentile(samples, 99) * 1000,
        "max_ms": max(samples) * 1000,
        "samples": len(samples),
    }


async def bench(args: argparse.Namespace) -> None:
    runs: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="relay-bench-") as tmp:
        for run_no in range(args.runs):
            runs.append(await one_run(run_no, args, Path(tmp)))
            line = "  ".join(
                f"{name} {shape} p99 {s['p99_ms']:.2f} ms"
                for name, table in runs[-1].items()
                for shape, s in table.items()
            )
            print(f"run {run_no + 1}/{args.runs}: {line}", flush=True)
    summary = {
        name: {
            shape: {
                key: median([r[name][shape][key] for r in runs])
                for key in ("p50_ms", "p99_ms", "max_ms", "samples")
            }
            for shape in runs[0][name]
        }
        for name in WAITERS
    }
    print(f"\ncallback 200 -> waiter has the job, median of {args.runs} runs")
    print(f"  {'shape':16} {'waiter':8} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8} {'samples':>8}")
    for shape in summary["httpx"]:
        for name in WAITERS:
            s = summary[name][shape]
            print(
                f"  {shape:16} {name:8} {s['p50_ms']:8.2f} {s['p99_ms']:8.2f} {s['max_ms']:8.2f}"
                f" {s['samples']:8.0f}"
            )
        overhead = {
            p: summary["client"][shape][f"{p}_ms"] - summary["httpx"][shape][f"{p}_ms"]
            for p in ("p50", "p99")
        }
        print(f"  {'':16} {'overhead':8} {overhead['p50']:8.2f} {overhead['p99']:8.2f}")
    path = write_json(
        "client_wait", {"args": vars(args) | {"json": None}, "runs": runs, "summary": summary}, args.json
    )
    print(f"  (written to {path})")


def _options() -> argparse.ArgumentParser:
    parser = options(__doc__, runs=3)
    parser.add_argument("--rounds", type=int, default=200, help="rounds of one waiter")
    parser.add_argument(
        "--waiters", type=int, default=1000, help="waiters held at once in the concurrent shape"
    )
    parser.add_argument("--concurrent-rounds", type=int, default=3, help="rounds of the concurrent shape")
    return parser


if __name__ == "__main__":
    main(_options(), bench)
