"""Benchmark: server memory per held long-poll waiter, relay against a bare Starlette long-poll endpoint.

  longpoll  a Starlette endpoint that holds `GET /v1/jobs/{source}/{job_id}?wait=S` on an asyncio.Event
  relay     `relay serve`: `GET /v1/jobs/demo/{job_id}?wait=300` on job IDs it does not know (held until
            the job appears or the wait is up), with max_waiters raised above the count
            (`--targets longpoll,relay,relay@DIR` adds the relay package found in DIR, to compare two)

Each target is warmed up (a few hundred short long-polls served), its resident set size (VmRSS) read, then
this process opens N connections (one per waiter, as clients do), sends one long-poll on each, waits until
the server reports all N held, lets it settle, and reads VmRSS again: (held - before) / N is the cost of one
held waiter, its connection included. The open-file limit is raised to its hard limit on both sides.

Run: .venv/bin/python bench/waiters.py [--runs 3] [--waiters 10000] [--targets T,T] [--json PATH]
"""

from __future__ import annotations

import argparse
import asyncio
import resource
import tempfile
import uuid
from pathlib import Path
from typing import Any

from _harness import (
    Connection,
    Server,
    get_request,
    main,
    median,
    open_connections,
    options,
    relay_waiters,
    serve,
    until,
    write_json,
)

TARGETS = ("longpoll", "relay")
_SETTLE_S = 0.5
_BATCH, _BATCH_PAUSE_S = 500, 0.1


async def _held(target: str, probe: Connection) -> int:
    if target.startswith("relay"):
        return await relay_waiters(probe)
    status, body, _ = await probe.request(get_request("/held", api_key=False))
    assert status == 200, body
    return int(body)


async def _hold(server: Server, target: str, count: int, wait: float) -> list[Connection]:
    """Open `count` connections and hold one long-poll on each; return once the server holds them all.

    They come in batches, each held before the next is sent, as waiters arrive over time: one burst of ten
    thousand would measure the burst's transient garbage (kept in the allocator's arenas) as much as the
    waiters themselves.
    """
    probe = await Connection.open(server.port)
    conns: list[Connection] = []
    while len(conns) < count:
        batch = await open_connections(server.port, min(_BATCH, count - len(conns)))
        for conn in batch:
            conn.send(get_request(f"/v1/jobs/demo/{uuid.uuid4().hex}?wait={wait:g}"))
        conns += batch

        async def all_held(expected: int = len(conns)) -> bool:
            return await _held(target, probe) >= expected

        await until(all_held, within=120, every=0.05)
        await asyncio.sleep(_BATCH_PAUSE_S)
    probe.close()
    return conns


async def _settled_rss(server: Server) -> int:
    """VmRSS once it stops moving (the relay reads each new waiter's job from the store after holding it)."""
    last = server.rss_kib()
    for _ in range(40):
        await asyncio.sleep(_SETTLE_S)
        now = server.rss_kib()
        if abs(now - last) <= last * 0.002:
            return now
        last = now
    return last


async def one_target(target: str, run_no: int, count: int, workdir: Path) -> dict[str, Any]:
    with serve(target, workdir / f"{target}-{run_no}", max_waiters=count + 1000) as server:
        # Warm-up: serve some short long-polls to the end, so first-use allocations are not counted.
        warm = await _hold(server, target, 200, wait=1)
        await asyncio.sleep(1.5)
        for conn in warm:
            conn.close()
        before = await _settled_rss(server)
        conns = await _hold(server, target, count, wait=300)
        held = await _settled_rss(server)
        for conn in conns:
            conn.close()
    return {"rss_before_kib": before, "rss_held_kib": held, "kib_per_waiter": (held - before) / count}


async def bench(args: argparse.Namespace) -> None:
    targets = args.targets.split(",")
    runs: list[dict[str, dict[str, Any]]] = []
    with tempfile.TemporaryDirectory(prefix="relay-bench-") as tmp:
        for run_no in range(args.runs):
            runs.append({t: await one_target(t, run_no, args.waiters, Path(tmp)) for t in targets})
            line = "  ".join(f"{t} {r['kib_per_waiter']:.1f} KiB" for t, r in runs[-1].items())
            print(f"run {run_no + 1}/{args.runs}: {line}", flush=True)
    summary = {
        t: {
            "kib_per_waiter": median([r[t]["kib_per_waiter"] for r in runs]),
            "ratio_to_longpoll": median(
                [r[t]["kib_per_waiter"] / r["longpoll"]["kib_per_waiter"] for r in runs]
            ),
            "rss_held_kib": median([r[t]["rss_held_kib"] for r in runs]),
        }
        for t in targets
    }
    print(f"\nmemory per held long-poll waiter, {args.waiters:,} held, median of {args.runs} runs")
    width = max(10, *(len(t) for t in targets))
    print(f"  {'target':{width}} {'KiB each':>9} {'/ bare':>7} {'RSS held':>10}")
    for target, s in summary.items():
        print(
            f"  {target:{width}} {s['kib_per_waiter']:9.1f} {s['ratio_to_longpoll']:7.2f}"
            f" {s['rss_held_kib'] / 1024:7.0f} MiB"
        )
    path = write_json("waiters", {"waiters": args.waiters, "runs": runs, "summary": summary}, args.json)
    print(f"  (written to {path})")


async def _bench(args: argparse.Namespace) -> None:
    needed = args.waiters + 500
    if resource.getrlimit(resource.RLIMIT_NOFILE)[0] < needed:
        raise SystemExit(f"{args.waiters:,} waiters need {needed:,} open files; the hard limit is lower")
    await bench(args)


def _options() -> argparse.ArgumentParser:
    parser = options(__doc__, runs=3)
    parser.add_argument("--waiters", type=int, default=10_000)
    parser.add_argument(
        "--targets", default=",".join(TARGETS), help="a subset, comma-separated, longpoll first"
    )
    return parser


if __name__ == "__main__":
    main(_options(), _bench)
