"""Benchmark: wake-up latency, from a final callback's 200 to the long-poll waiter's answer.

A waiter holds `GET /v1/jobs/demo/{id}?wait=30` on its own keep-alive connection; once the relay reports
it held (its `relay_waiters` gauge), a sender posts the job's signed final callback on another connection.
Both answers are read by this one process and stamped with the same monotonic clock as their last byte
arrives; the latency is waiter answer minus callback answer. Three shapes:

  one           one waiter, one job, one round at a time
  16 one job    sixteen waiters on the same job, woken by one callback (16 samples per round)
  16 jobs       sixteen waiters on sixteen jobs, their sixteen callbacks sent at once

The baseline, measured in the same rounds on the same server: a plain `GET /healthz` round trip (request
written to answer read) on a third connection.

Targets (`--targets`): `sqlite` (one relay), `postgres` (one relay on a scratch PostgreSQL database), and
`postgres-across` (two relays on one database: the waiters on the first, the callbacks sent to the second,
so every wake-up crosses processes through LISTEN/NOTIFY).

Run: .venv/bin/python bench/wakeup.py [--runs 3] [--rounds 500] [--targets sqlite,postgres,postgres-across]
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
import uuid
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

from _harness import (
    Connection,
    get_request,
    main,
    median,
    open_connections,
    options,
    percentile,
    relay_waiters,
    scratch_postgres,
    serve,
    signed_callback,
    until,
    write_json,
)

SHAPES = ("one", "16 one job", "16 jobs")
WIDTH = 16


def _wait_request(job_id: str) -> bytes:
    return get_request(f"/v1/jobs/demo/{job_id}?wait=30")


async def _held(probe: Connection, count: int) -> None:
    async def held() -> bool:
        return await relay_waiters(probe) == count

    await until(held, within=10)


async def _round(
    shape: str, waiters: list[Connection], senders: list[Connection], probe: Connection
) -> list[float]:
    """One round of `shape`; answers the latencies in seconds."""
    if shape == "one":
        jobs = [uuid.uuid4().hex]
        waiters = waiters[:1]
    elif shape == "16 one job":
        jobs = [uuid.uuid4().hex] * WIDTH
    else:
        jobs = [uuid.uuid4().hex for _ in range(WIDTH)]
    answers = [waiter.send(_wait_request(job)) for waiter, job in zip(waiters, jobs, strict=True)]
    await _held(probe, len(answers))
    callbacks = [signed_callback(job) for job in dict.fromkeys(jobs)]
    acks = await asyncio.gather(*(sender.request(cb) for sender, cb in zip(senders, callbacks, strict=False)))
    acked_at = {
        job: at for job, (status, _, at) in zip(dict.fromkeys(jobs), acks, strict=True) if status == 200
    }
    latencies = []
    for job, (status, body, at) in zip(jobs, await asyncio.gather(*answers), strict=True):
        if status != 200 or b'"succeeded"' not in body or job not in acked_at:
            raise RuntimeError(f"unexpected answer {status}: {body[:200]!r}")
        latencies.append(at - acked_at[job])
    return latencies


async def _round_trip(probe: Connection) -> float:
    started = time.perf_counter()
    status, _, at = await probe.request(get_request("/healthz", api_key=False))
    assert status == 200
    return at - started


TARGETS = ("sqlite", "postgres", "postgres-across")


async def one_run(run_no: int, args: argparse.Namespace, workdir: Path, target: str) -> dict[str, Any]:
    async with AsyncExitStack() as stack:
        database = None
        if target != "sqlite":
            database = await stack.enter_async_context(scratch_postgres("wakeup"))
        server = stack.enter_context(serve("relay", workdir / f"{target}-{run_no}", database))
        sender_server = server
        if target == "postgres-across":
            sender_server = stack.enter_context(serve("relay", workdir / f"{target}-{run_no}-b", database))
        return await _measure(args, server.port, sender_server.port)


async def _measure(args: argparse.Namespace, port: int, sender_port: int) -> dict[str, Any]:
    """Waiters and the probe on `port`, the callbacks sent to `sender_port`."""
    waiters = await open_connections(port, WIDTH)
    senders = await open_connections(sender_port, WIDTH)
    probe = await Connection.open(port)
    for _ in range(20):  # warm up every path once
        await _round("16 jobs", waiters, senders, probe)
    result: dict[str, Any] = {}
    round_trips: list[float] = []
    for shape in SHAPES:
        samples: list[float] = []
        rounds = args.rounds if shape == "one" else max(1, args.rounds // 5)
        for _ in range(rounds):
            samples += await _round(shape, waiters, senders, probe)
            round_trips.append(await _round_trip(probe))
        result[shape] = _stats(samples)
    result["round trip"] = _stats(round_trips)
    for conn in (*waiters, *senders, probe):
        conn.close()
    return result


def _stats(samples: list[float]) -> dict[str, float]:
    return {
        "p50_ms": percentile(samples, 50) * 1000,
        "p99_ms": percentile(samples, 99) * 1000,
        "max_ms": max(samples) * 1000,
        "samples": len(samples),
    }


async def bench(args: argparse.Namespace) -> None:
    targets = args.targets.split(",")
    runs: dict[str, list[dict[str, Any]]] = {target: [] for target in targets}
    with tempfile.TemporaryDirectory(prefix="relay-bench-") as tmp:
        for run_no in range(args.runs):
            for target in targets:  # interleaved, so a slow spell of the machine hits every target alike
                runs[target].append(await one_run(run_no, args, Path(tmp), target))
                line = "  ".join(f"{k} p99 {v['p99_ms']:.3f} ms" for k, v in runs[target][-1].items())
                print(f"run {run_no + 1}/{args.runs} {target}: {line}", flush=True)
    print(
        f"\nwake-up latency, callback 200 -> waiter answer ({args.rounds} rounds of one,"
        f" {args.rounds // 5} of sixteen), median of {args.runs} runs"
    )
    summary = {target: _summary(target_runs) for target, target_runs in runs.items()}
    for target, table in summary.items():
        print(f"  {target}")
        print(f"    {'shape':12} {'p50 ms':>8} {'p99 ms':>8} {'p50/rt':>7} {'p99/rt':>7} {'samples':>8}")
        for shape, s in table.items():
            print(
                f"    {shape:12} {s['p50_ms']:8.3f} {s['p99_ms']:8.3f} {s['p50_ratio_to_round_trip']:7.2f}"
                f" {s['p99_ratio_to_round_trip']:7.2f} {s['samples']:8.0f}"
            )
    print("  (rt: a GET /healthz round trip on the waiters' server, same rounds)")
    path = write_json("wakeup", {"rounds": args.rounds, "runs": runs, "summary": summary}, args.json)
    print(f"  (written to {path})")


def _summary(runs: list[dict[str, Any]]) -> dict[str, Any]:
    summary: dict[str, Any] = {}
    for shape in (*SHAPES, "round trip"):
        summary[shape] = {
            key: median([r[shape][key] for r in runs]) for key in ("p50_ms", "p99_ms", "max_ms", "samples")
        }
        for p in ("p50", "p99"):
            summary[shape][f"{p}_ratio_to_round_trip"] = median(
                [r[shape][f"{p}_ms"] / r["round trip"][f"{p}_ms"] for r in runs]
            )
    return summary


def _options() -> argparse.ArgumentParser:
    parser = options(__doc__, runs=3)
    parser.add_argument("--targets", default=",".join(TARGETS), help=f"comma-separated, of {TARGETS}")
    parser.add_argument("--rounds", type=int, default=500, help="rounds of one waiter; a fifth as many of 16")
    return parser


if __name__ == "__main__":
    main(_options(), bench)
