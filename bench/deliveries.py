"""Benchmark: deliveries to subscribers, from relay's outbox to fast local subscribers.

  throughput   N deliveries are queued in the database (through the store's own ingest: N final callbacks,
               one subscription) before `relay serve` starts; the relay drains them to one subscriber that
               answers 200 at once. Deliveries per second, first received to last received.
  fanout       one final callback for a source with 1,000 subscriptions: time from sending the callback
               until the last subscription received its delivery (and the first, and the median). Two
               layouts: 1,000 endpoints (each subscription on its own port, as 1,000 customers would be),
               and all 1,000 on one endpoint (where endpoint_concurrency bounds the parallelism).

Baseline for each: the same POSTs (signed, same body size) sent by a plain httpx.AsyncClient with relay's
concurrency (8 to one endpoint, 64 in all), in a process pinned like the relay: no store, so no outbox, no
claim, lease or attempt record. The ratio is what durability and bookkeeping cost on top of HTTP.

The subscribers are raw asyncio protocols on uvloop in this process (the client CPU); each request is
stamped with the monotonic clock as its last byte arrives.

Run: .venv/bin/python bench/deliveries.py [--deliveries 20000] [--subscriptions 1000] [--runs 3] [--no-pin]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import hashlib
import hmac
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import orjson
from _harness import (
    API_KEY,
    PYTHON,
    SERVER_CPU,
    Connection,
    median,
    run,
    serve,
    setup,
    signed_callback,
    until,
    write_json,
)

CONCURRENCY = 64  # relay's default delivery_concurrency and endpoint_concurrency: the baseline uses the same
ENDPOINT_CONCURRENCY = 8
_OK = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\ncontent-type: text/plain\r\n\r\nok"


class _Subscriber(asyncio.Protocol):
    """Answers every request 200 at once; records (webhook-id, monotonic arrival) in a shared list."""

    def __init__(self, log: list[tuple[bytes, float]]) -> None:
        self._log = log
        self._buf = bytearray()
        self._transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self._buf += data
        while True:
            head_end = self._buf.find(b"\r\n\r\n")
            if head_end < 0:
                return
            head = bytes(self._buf[:head_end]).lower() + b"\r\n"
            end = head_end + 4 + int(_header(head, b"content-length") or 0)
            if len(self._buf) < end:
                return
            self._log.append((_header(head, b"webhook-id"), time.monotonic()))
            del self._buf[:end]
            if self._transport is not None and not self._transport.is_closing():
                self._transport.write(_OK)


def _header(head: bytes, name: bytes) -> bytes:
    """A header's value in a lower-cased head that ends with CRLF (b"" when absent)."""
    at = head.find(b"\r\n" + name + b":")
    if at < 0:
        return b""
    start = at + len(name) + 3
    return head[start : head.find(b"\r\n", start)].strip()


async def _listen(log: list[tuple[bytes, float]], count: int) -> list[asyncio.AbstractServer]:
    loop = asyncio.get_running_loop()
    return [await loop.create_server(lambda: _Subscriber(log), "127.0.0.1", 0) for _ in range(count)]


def _port(server: asyncio.AbstractServer) -> int:
    return int(server.sockets[0].getsockname()[1])  # type: ignore[attr-defined]


async def _api(conn: Connection, method: str, path: str, doc: dict[str, Any] | None = None) -> Any:
    body = b"" if doc is None else orjson.dumps(doc)
    raw = (
        f"{method} {path} HTTP/1.1\r\nhost: 127.0.0.1\r\nauthorization: Bearer {API_KEY}\r\n"
        f"content-type: application/json\r\ncontent-length: {len(body)}\r\n\r\n"
    ).encode() + body
    status, answer, _ = await conn.request(raw)
    assert 200 <= status < 300, answer
    return orjson.loads(answer)


# --- throughput -------------------------------------------------------------------------------------------


async def _preload(db: Path, url: str, n: int) -> None:
    """N final callbacks through the store's ingest, with one subscription: N deliveries due now."""
    from relay.models import Callback, Status
    from relay.store.sqlite import SQLiteStore

    store = await SQLiteStore.open(str(db), synchronous="normal")
    try:
        await store.create_subscription(
            url, None, None, "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", time.time()
        )
        now = time.time()
        for start in range(0, n, 1000):
            await asyncio.gather(
                *(
                    store.ingest(
                        "demo",
                        Callback(
                            f"job-{i}", Status.SUCCEEDED, f"d{i}", b"{}", {"url": f"https://cdn/{i}.png"}
                        ),
                        now,
                        900.0,
                    )
                    for i in range(start, min(n, start + 1000))
                )
            )
    finally:
        await store.close()


async def relay_throughput(n: int, workdir: Path) -> float:
    log: list[tuple[bytes, float]] = []
    (server,) = await _listen(log, 1)
    try:
        await _preload(workdir / "relay.db", f"http://127.0.0.1:{_port(server)}/hook", n)
        with serve("relay", workdir, allow_private_destinations=True):
            await until(_count_reached(log, n), within=600, every=0.05)
    finally:
        server.close()
    return (n - 1) / (log[n - 1][1] - log[0][1])


def _count_reached(log: list[Any], n: int) -> Any:
    async def reached() -> bool:
        return len(log) >= n

    return reached


async def _send_all(ports: list[int], n: int, concurrency: int) -> float:
    """The baseline sender: N signed POSTs (request i to ports[i % len]) over one pooled httpx client,
    `concurrency` at a time; answers the seconds from the first request to the last answer."""
    import httpx

    key = base64.b64decode("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    queue: asyncio.Queue[int] = asyncio.Queue()
    for i in range(n):
        queue.put_nowait(i)
    data = b"x" * 330  # about a job object's size in the relay's deliveries

    async def worker(client: httpx.AsyncClient) -> None:
        while not queue.empty():
            i = queue.get_nowait()
            body = b'{"id":"evt_%d","type":"job.succeeded","data":"%s"}' % (i, data)
            msg_id, ts = f"evt_{i}", str(int(time.time()))
            digest = hmac.new(
                key, b"%s.%s.%s" % (msg_id.encode(), ts.encode(), body), hashlib.sha256
            ).digest()
            headers = {
                "content-type": "application/json",
                "webhook-id": msg_id,
                "webhook-timestamp": ts,
                "webhook-signature": "v1," + base64.b64encode(digest).decode(),
            }
            url = f"http://127.0.0.1:{ports[i % len(ports)]}/hook"
            response = await client.post(url, content=body, headers=headers)
            assert response.status_code == 200

    async with httpx.AsyncClient(limits=limits, timeout=15, follow_redirects=False) as client:
        started = time.monotonic()
        await asyncio.gather(*(worker(client) for _ in range(concurrency)))
        return time.monotonic() - started


async def baseline(ports: list[int], n: int, concurrency: int) -> float:
    """Seconds the baseline sender took for N POSTs, run in its own process on the server's CPU."""
    proc = await asyncio.create_subprocess_exec(
        PYTHON,
        str(Path(__file__)),
        "sender",
        "--ports",
        ",".join(map(str, ports)),
        "--deliveries",
        str(n),
        "--concurrency",
        str(concurrency),
        stdout=asyncio.subprocess.PIPE,
    )
    out, _ = await proc.communicate()
    assert proc.returncode == 0
    return float(out)


async def baseline_throughput(n: int) -> float:
    log: list[tuple[bytes, float]] = []
    (server,) = await _listen(log, 1)
    try:
        await baseline([_port(server)], n, ENDPOINT_CONCURRENCY)
    finally:
        server.close()
    return (n - 1) / (log[n - 1][1] - log[0][1])


# --- fan-out ----------------------------------------------------------------------------------------------


async def fanout(subscriptions: int, runs: int, endpoints: int, workdir: Path) -> list[dict[str, float]]:
    log: list[tuple[bytes, float]] = []
    servers = await _listen(log, endpoints)
    results = []
    try:
        with serve("relay", workdir, allow_private_destinations=True) as relay:
            api = await Connection.open(relay.port)
            for i in range(subscriptions):
                url = f"http://127.0.0.1:{_port(servers[i % endpoints])}/hook/{i}"
                await _api(api, "POST", "/v1/subscriptions", {"url": url})
            for run_no in range(runs):
                log.clear()
                request = signed_callback(f"fanout-{run_no}")
                sent, sent_perf = time.monotonic(), time.perf_counter()
                status, _, acked = await api.request(request)
                assert status == 200
                await until(_count_reached(log, subscriptions), within=120, every=0.001)
                arrivals = sorted(t - sent for _, t in log)
                assert len({msg_id for msg_id, _ in log}) == 1  # one event, one webhook-id everywhere
                results.append(
                    {
                        "ack_ms": (acked - sent_perf) * 1000,
                        "first_ms": arrivals[0] * 1000,
                        "median_ms": statistics.median(arrivals) * 1000,
                        "last_ms": arrivals[-1] * 1000,
                    }
                )
                print(
                    f"  fan-out to {subscriptions} ({endpoints} endpoint(s)), run {run_no + 1}: "
                    f"last {results[-1]['last_ms']:.0f} ms",
                    flush=True,
                )
            api.close()
        ports = [_port(servers[i % endpoints]) for i in range(subscriptions)]
        concurrency = ENDPOINT_CONCURRENCY if endpoints == 1 else CONCURRENCY
        for _ in range(runs):
            results.append({"baseline_ms": await baseline(ports, subscriptions, concurrency) * 1000})
    finally:
        for server in servers:
            server.close()
    return results


async def bench(args: argparse.Namespace) -> None:
    summary: dict[str, Any] = {}
    relay_rates, baseline_rates = [], []
    for run_no in range(args.runs):
        with tempfile.TemporaryDirectory(prefix="relay-bench-") as tmp:
            relay_rates.append(await relay_throughput(args.deliveries, Path(tmp)))
        baseline_rates.append(await baseline_throughput(args.deliveries))
        print(
            f"run {run_no + 1}/{args.runs}: relay {relay_rates[-1]:,.0f}/s, "
            f"httpx sender {baseline_rates[-1]:,.0f}/s",
            flush=True,
        )
    summary["throughput"] = {
        "deliveries": args.deliveries,
        "relay_per_s": median(relay_rates),
        "baseline_per_s": median(baseline_rates),
        "runs": {"relay": relay_rates, "baseline": baseline_rates},
    }
    for endpoints in (args.subscriptions, 1):
        with tempfile.TemporaryDirectory(prefix="relay-bench-") as tmp:
            runs = await fanout(args.subscriptions, args.runs, endpoints, Path(tmp))
        relay_runs, baseline_runs = runs[: args.runs], runs[args.runs :]
        summary[f"fanout_{endpoints}_endpoints"] = {
            "subscriptions": args.subscriptions,
            "endpoints": endpoints,
            **{key: median([r[key] for r in relay_runs]) for key in relay_runs[0]},
            "baseline_ms": median([r["baseline_ms"] for r in baseline_runs]),
            "runs": runs,
        }
    t = summary["throughput"]
    print(f"\ndeliveries to one fast subscriber ({t['deliveries']:,} queued), median of {args.runs} runs:")
    print(f"  relay         {t['relay_per_s']:>8,.0f} deliveries/s")
    print(f"  httpx sender  {t['baseline_per_s']:>8,.0f} POSTs/s (no store, same concurrency)")
    print(f"  ratio         {t['relay_per_s'] / t['baseline_per_s']:>8.2f}")
    print(f"\nfan-out of one result to {args.subscriptions:,} subscriptions (ms from sending the callback):")
    print(f"  {'layout':16} {'ack':>7} {'first':>7} {'median':>7} {'last':>7} {'httpx':>7}")
    for endpoints in (args.subscriptions, 1):
        f = summary[f"fanout_{endpoints}_endpoints"]
        print(
            f"  {f'{endpoints} endpoint(s)':16} {f['ack_ms']:>7.1f} {f['first_ms']:>7.1f} "
            f"{f['median_ms']:>7.1f} {f['last_ms']:>7.1f} {f['baseline_ms']:>7.1f}"
        )
    print(
        "  (httpx: the same POSTs from a plain client with relay's concurrency, first sent to last answered)"
    )
    path = write_json("deliveries", summary, args.json)
    print(f"  (written to {path})")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("mode", nargs="?", default="bench", choices=["bench", "sender"])
    parser.add_argument("--deliveries", type=int, default=20_000)
    parser.add_argument("--subscriptions", type=int, default=1_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--ports", default="", help="(sender mode) the subscribers' ports, comma-separated")
    parser.add_argument("--concurrency", type=int, default=CONCURRENCY, help="(sender mode)")
    parser.add_argument("--json", type=Path, default=None, help="write results here (default bench/results/)")
    parser.add_argument("--no-pin", action="store_true", help="do not pin server and client to CPUs 0 and 1")
    args = parser.parse_args()
    if args.mode == "sender":  # the baseline, in its own process on the server's CPU
        if (os.cpu_count() or 1) >= 2 and not args.no_pin:
            os.sched_setaffinity(0, {SERVER_CPU})
        ports = [int(p) for p in args.ports.split(",")]
        print(run(_send_all(ports, args.deliveries, args.concurrency)))
        sys.exit(0)
    setup(pin=not args.no_pin)
    run(bench(args))


if __name__ == "__main__":
    main()
