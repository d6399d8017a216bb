"""Benchmark: accepted callbacks per second, relay against two baselines on the same server stack.

  bare           a Starlette endpoint that only reads the body and answers 200
  verify-insert  a Starlette endpoint doing only the HMAC verify and one aiosqlite insert-and-commit
  relay          `relay serve`: POST /hooks/demo, verified, parsed, committed (job, callback, event), 200

Every request is a signed final callback for a unique, random job ID (as providers issue them), built and
signed before the clock starts (right before each target's run, well inside the 300 s tolerance), and all
targets get the same kind of request from the same load generator: this process, over keep-alive
connections, writing the next prebuilt request from the moment the previous answer is complete. Each run
starts every target afresh (new database) and takes them in turn, so a ratio compares figures measured a
minute or two apart.

Run: .venv/bin/python bench/ingest.py [--runs 5] [--requests 20000] [--connections 64] [--json PATH]
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any, cast

from _harness import (
    Connection,
    Server,
    _response_end,
    get_request,
    label,
    main,
    median,
    options,
    serve,
    signed_callback,
    write_json,
)

TARGETS = ("bare", "verify-insert", "relay")


class _Load:
    """One closed-loop run of `requests` over many connections; the first `warmup` answers are untimed."""

    def __init__(self, requests: list[bytes], warmup: int, server: Server) -> None:
        self.requests = requests
        self.warmup = warmup
        self.server = server
        self.sent = 0
        self.answered = 0
        self.statuses: Counter[int] = Counter()
        self.marks: dict[str, tuple[float, float, float, float]] = {}
        self.finished: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def next_request(self) -> bytes | None:
        if self.sent == len(self.requests):
            return None
        self.sent += 1
        return self.requests[self.sent - 1]

    def answer(self, status: int) -> None:
        self.answered += 1
        self.statuses[status] += 1
        if self.answered == self.warmup:
            self.marks["start"] = self._mark()
        elif self.answered == len(self.requests):
            self.marks["end"] = self._mark()
            self.finished.set_result(None)

    def _mark(self) -> tuple[float, float, float, float]:
        server = self.server
        return (
            time.perf_counter(),
            time.process_time(),
            server.cpu_seconds(),
            server.cpu_seconds(main_thread=True),
        )


class _Sender(asyncio.Protocol):
    """A keep-alive connection that writes the next request as soon as the previous answer is complete."""

    def __init__(self, load: _Load) -> None:
        self._load = load
        self._buf = bytearray()
        self._transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)  # uvloop's transports are not subclasses

    def start(self) -> None:
        assert self._transport is not None
        request = self._load.next_request()
        if request is not None:
            self._transport.write(request)

    def data_received(self, data: bytes) -> None:
        self._buf += data
        while (found := _response_end(self._buf)) is not None:
            status, _, end = found
            del self._buf[:end]
            self._load.answer(status)
            self.start()

    def connection_lost(self, exc: Exception | None) -> None:
        if not self._load.finished.done():
            self._load.finished.set_exception(ConnectionError(f"connection lost: {exc}"))


async def run_load(server: Server, requests: list[bytes], warmup: int, connections: int) -> dict[str, Any]:
    loop = asyncio.get_running_loop()
    load = _Load(requests, warmup, server)
    senders = [
        (await loop.create_connection(lambda: _Sender(load), "127.0.0.1", server.port))[1]
        for _ in range(connections)
    ]
    for sender in senders:
        sender.start()
    await load.finished
    for sender in senders:
        assert sender._transport is not None
        sender._transport.close()
    (t0, c0, s0, m0), (t1, c1, s1, m1) = load.marks["start"], load.marks["end"]
    wall, timed = t1 - t0, len(requests) - warmup
    return {
        "requests_per_s": timed / wall,
        "statuses": {str(k): v for k, v in load.statuses.items()},
        "server_cpu": (s1 - s0) / wall,
        "client_cpu": (c1 - c0) / wall,
        # Where the server's CPU went, per request: its event loop, and its other threads (SQLite).
        "loop_us": (m1 - m0) / timed * 1e6,
        "threads_us": ((s1 - s0) - (m1 - m0)) / timed * 1e6,
    }


async def committed_jobs(port: int) -> int:
    """Jobs the relay reports as succeeded (its `relay_jobs` gauge), to check every 200 was committed."""
    conn = await Connection.open(port)
    try:
        _, body, _ = await conn.request(get_request("/metrics", api_key=False))
    finally:
        conn.close()
    for line in body.decode().splitlines():
        if line.startswith('relay_jobs{status="succeeded"}'):
            return int(float(line.split()[1]))
    return 0


async def one_target(target: str, run: int, args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    with serve(target, workdir / f"{label(target)}-{run}") as server:
        total = args.warmup + args.requests
        requests = [signed_callback(uuid.uuid4().hex) for _ in range(total)]
        result = await run_load(server, requests, args.warmup, args.connections)
        if set(result["statuses"]) != {"200"}:
            raise RuntimeError(f"{target}: answers other than 200: {result['statuses']}")
        if target.startswith("relay") and target != "relay-nostore":
            result["committed"] = await committed_jobs(server.port)
            if result["committed"] != total:
                raise RuntimeError(f"relay committed {result['committed']} jobs of {total}")
    return result


def summarise(runs: list[dict[str, dict[str, Any]]], targets: list[str]) -> dict[str, Any]:
    """Medians over the runs; each ratio is taken within its run, then the median of the ratios."""
    summary: dict[str, Any] = {}
    for target in targets:
        per_run = [run[target] for run in runs]
        summary[target] = {
            "requests_per_s": median([r["requests_per_s"] for r in per_run]),
            **{
                key: median([r[key] for r in per_run])
                for key in ("server_cpu", "client_cpu", "loop_us", "threads_us")
            },
        }
        if "bare" in targets:
            summary[target]["ratio_to_bare"] = median(
                [run[target]["requests_per_s"] / run["bare"]["requests_per_s"] for run in runs]
            )
    return summary


async def bench(args: argparse.Namespace) -> None:
    targets = args.targets.split(",")
    runs: list[dict[str, dict[str, Any]]] = []
    with tempfile.TemporaryDirectory(prefix="relay-bench-") as tmp:
        for run in range(args.runs):
            runs.append({t: await one_target(t, run, args, Path(tmp)) for t in targets})
            line = "  ".join(f"{t} {runs[-1][t]['requests_per_s']:7.0f}/s" for t in targets)
            print(f"run {run + 1}/{args.runs}: {line}", flush=True)
    summary = summarise(runs, targets)
    print(
        f"\naccepted callbacks per second: {args.requests:,} timed requests ({args.warmup:,} warm-up)"
        f" per target and run, {args.connections} keep-alive connections, median of {args.runs} runs"
    )
    width = max(14, *(len(t) for t in targets))
    print(
        f"  {'target':{width}} {'req/s':>8} {'/ bare':>7} {'server CPU':>11} {'client CPU':>11}"
        f" {'loop us/req':>12} {'threads us/req':>15}"
    )
    for target in targets:
        s = summary[target]
        print(
            f"  {target:{width}} {s['requests_per_s']:8.0f} {s.get('ratio_to_bare', float('nan')):7.2f}"
            f" {s['server_cpu']:10.0%} {s['client_cpu']:10.0%} {s['loop_us']:12.0f} {s['threads_us']:15.0f}"
        )
    print(
        "  (server CPU per request: its event-loop thread, and its other threads: SQLite writer and reader)"
    )
    path = write_json(
        "ingest",
        {
            "requests": args.requests,
            "warmup": args.warmup,
            "connections": args.connections,
            "runs": runs,
            "summary": summary,
        },
        args.json,
    )
    print(f"  (written to {path})")


def _options() -> argparse.ArgumentParser:
    parser = options(__doc__, runs=5)
    parser.add_argument("--requests", type=int, default=20_000, help="timed requests per target and run")
    parser.add_argument("--warmup", type=int, default=2_000, help="untimed requests before them")
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--targets", default=",".join(TARGETS), help="a subset, comma-separated")
    return parser


if __name__ == "__main__":
    main(_options(), bench)
