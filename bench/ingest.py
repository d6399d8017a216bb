"""Benchmark: accepted callbacks per second, relay against two baselines on the same server stack.

  bare           a Starlette endpoint that only reads the body and answers 200
  verify-insert  a Starlette endpoint doing only the HMAC verify and one aiosqlite insert-and-commit
  relay          `relay serve`: POST /hooks/demo, verified, parsed, committed (job, callback, event), 200
  relay-pg       `relay serve` on a scratch PostgreSQL database (LISTEN/NOTIFY on, the default pool of 10)
  relay-pg-2     two `relay serve` instances on one PostgreSQL database, the connections split between them
                 (`relay@DIR`, `relay-pg@DIR`: the relay package in DIR, to compare two checkouts in one run)
  pg-insert      PostgreSQL's own limit for the same rows: pgbench (C, 64 clients) inserting a job and its
                 history entry per transaction, through relay's schema, with nothing in front

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
import re
import tempfile
import time
import uuid
from collections import Counter
from contextlib import AsyncExitStack
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
    percentile,
    scratch_postgres,
    serve,
    signed_callback,
    write_json,
)

TARGETS = ("bare", "verify-insert", "relay")
POSTGRES_TARGETS = ("relay-pg", "relay-pg-2", "pg-insert")
# pgbench's transaction: the rows relay commits for a callback that creates its job (job, history + event).
_PGBENCH_SCRIPT = r"""\set r random(1, 1000000000000)
BEGIN;
INSERT INTO jobs (source, job_id, status, result, created_at, updated_at, finished_at, callbacks)
  VALUES ('demo', 'pgbench-' || :client_id || '-' || :r, 'succeeded', convert_to('{"output":[1]}', 'UTF8'),
  1, 1, 1, 1) ON CONFLICT DO NOTHING RETURNING id AS job_row \gset
INSERT INTO callbacks (job_row, delivery_id, received_at, status, via, body, event_id, type, data)
  VALUES (:job_row, 'msg_' || :r, 1, 'succeeded', 'webhook', convert_to(repeat('x', 180), 'UTF8'),
  'evt_' || :r, 'job.succeeded', convert_to(repeat('y', 400), 'UTF8'));
END;
"""


class _Load:
    """One closed-loop run of `requests` over many connections; the first `warmup` answers are untimed."""

    def __init__(self, requests: list[bytes], warmup: int, servers: list[Server]) -> None:
        self.requests = requests
        self.warmup = warmup
        self.servers = servers
        self.sent = 0
        self.answered = 0
        self.statuses: Counter[int] = Counter()
        self.latencies: list[float] = []  # of the timed answers: request written to answer read, seconds
        self.marks: dict[str, tuple[float, float, float, float]] = {}
        self.finished: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def next_request(self) -> bytes | None:
        if self.sent == len(self.requests):
            return None
        self.sent += 1
        return self.requests[self.sent - 1]

    def answer(self, status: int, latency: float) -> None:
        self.answered += 1
        self.statuses[status] += 1
        if self.answered > self.warmup:
            self.latencies.append(latency)
        if self.answered == self.warmup:
            self.marks["start"] = self._mark()
        elif self.answered == len(self.requests):
            self.marks["end"] = self._mark()
            self.finished.set_result(None)

    def _mark(self) -> tuple[float, float, float, float]:
        return (
            time.perf_counter(),
            time.process_time(),
            sum(server.cpu_seconds() for server in self.servers),
            sum(server.cpu_seconds(main_thread=True) for server in self.servers),
        )


class _Sender(asyncio.Protocol):
    """A keep-alive connection that writes the next request as soon as the previous answer is complete."""

    def __init__(self, load: _Load) -> None:
        self._load = load
        self._buf = bytearray()
        self._transport: asyncio.Transport | None = None
        self._sent_at = 0.0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)  # uvloop's transports are not subclasses

    def start(self) -> None:
        assert self._transport is not None
        request = self._load.next_request()
        if request is not None:
            self._sent_at = time.perf_counter()
            self._transport.write(request)

    def data_received(self, data: bytes) -> None:
        self._buf += data
        while (found := _response_end(self._buf)) is not None:
            status, _, end = found
            del self._buf[:end]
            self._load.answer(status, time.perf_counter() - self._sent_at)
            self.start()

    def connection_lost(self, exc: Exception | None) -> None:
        if not self._load.finished.done():
            self._load.finished.set_exception(ConnectionError(f"connection lost: {exc}"))


async def run_load(
    servers: list[Server], requests: list[bytes], warmup: int, connections: int
) -> dict[str, Any]:
    """The load on `servers`, its connections dealt among them in turn."""
    loop = asyncio.get_running_loop()
    load = _Load(requests, warmup, servers)
    senders = [
        (await loop.create_connection(lambda: _Sender(load), "127.0.0.1", servers[n % len(servers)].port))[1]
        for n in range(connections)
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
        "p50_ms": percentile(load.latencies, 50) * 1000,
        "p99_ms": percentile(load.latencies, 99) * 1000,
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
    if target == "pg-insert":
        return await pgbench_inserts(args)
    async with AsyncExitStack() as stack:
        database = None
        kind = target
        base, at, where = target.partition("@")
        if base in ("relay-pg", "relay-pg-2"):  # relay-pg@DIR: the relay package in DIR, on PostgreSQL
            database = await stack.enter_async_context(scratch_postgres("ingest")) + args.pg_options
            kind = f"relay{at}{where}"
        instances = 2 if base == "relay-pg-2" else 1
        servers = [
            stack.enter_context(serve(kind, workdir / f"{label(target)}-{run}-{n}", database))
            for n in range(instances)
        ]
        total = args.warmup + args.requests
        requests = [signed_callback(uuid.uuid4().hex) for _ in range(total)]
        result = await run_load(servers, requests, args.warmup, args.connections)
        if set(result["statuses"]) != {"200"}:
            raise RuntimeError(f"{target}: answers other than 200: {result['statuses']}")
        if target.startswith("relay") and target != "relay-nostore":
            result["committed"] = await committed_jobs(servers[0].port)
            if result["committed"] != total:
                raise RuntimeError(f"relay committed {result['committed']} jobs of {total}")
    return result


async def pgbench_inserts(args: argparse.Namespace, seconds: int = 10) -> dict[str, Any]:
    """pgbench committing relay's rows for a new job, as many clients as the load has connections."""
    from relay.store.postgres.migrations import migrate_url

    async with scratch_postgres("pgbench") as url:
        await migrate_url(url)
        with tempfile.NamedTemporaryFile("w", suffix=".sql") as script:
            script.write(_PGBENCH_SCRIPT)
            script.flush()
            argv = ["pgbench", "-n", "-c", str(args.connections), "-j", "1", "-T", str(seconds)]
            proc = await asyncio.create_subprocess_exec(
                *argv, "-f", script.name, url, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
            )
            out, err = await proc.communicate()
    if proc.returncode != 0:
        raise RuntimeError(f"pgbench failed: {err.decode()[-2000:]}")
    tps = re.search(r"tps = ([0-9.]+)", out.decode())
    if tps is None:
        raise RuntimeError(f"no tps in pgbench's output: {out.decode()[-2000:]}")
    latency = re.search(r"latency average = ([0-9.]+) ms", out.decode())
    average_ms = float(latency.group(1)) if latency else float("nan")
    zero = {"server_cpu": 0.0, "client_cpu": 0.0, "loop_us": 0.0, "threads_us": 0.0}
    zero |= {"p50_ms": average_ms, "p99_ms": float("nan")}  # pgbench reports an average only
    return {"requests_per_s": float(tps.group(1)), "statuses": {"200": 0}, **zero}


def summarise(runs: list[dict[str, dict[str, Any]]], targets: list[str]) -> dict[str, Any]:
    """Medians over the runs; each ratio is taken within its run, then the median of the ratios."""
    summary: dict[str, Any] = {}
    for target in targets:
        per_run = [run[target] for run in runs]
        summary[target] = {
            "requests_per_s": median([r["requests_per_s"] for r in per_run]),
            **{
                key: median([r[key] for r in per_run])
                for key in ("server_cpu", "client_cpu", "loop_us", "threads_us", "p50_ms", "p99_ms")
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
        f"  {'target':{width}} {'req/s':>8} {'/ bare':>7} {'p50 ms':>7} {'p99 ms':>7} {'server CPU':>11}"
        f" {'client CPU':>11} {'loop us/req':>12} {'threads us/req':>15}"
    )
    for target in targets:
        s = summary[target]
        print(
            f"  {target:{width}} {s['requests_per_s']:8.0f} {s.get('ratio_to_bare', float('nan')):7.2f}"
            f" {s['p50_ms']:7.1f} {s['p99_ms']:7.1f} {s['server_cpu']:10.0%} {s['client_cpu']:10.0%}"
            f" {s['loop_us']:12.0f} {s['threads_us']:15.0f}"
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
    parser.add_argument(
        "--pg-options", default="", help="appended to relay's PostgreSQL URL, e.g. ?pool_max=32"
    )
    parser.add_argument(
        "--targets", default=",".join(TARGETS), help=f"comma-separated, of {TARGETS + POSTGRES_TARGETS}"
    )
    return parser


if __name__ == "__main__":
    main(_options(), bench)
