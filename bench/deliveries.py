"""Benchmark: deliveries to fast local subscribers, and the HTTP client that sends them, in one run.

  senders      N signed POSTs to one fast receiver from a plain client with no store: httpx.AsyncClient,
               httpx over the httpx-aiohttp transport (when it is installed) and aiohttp.ClientSession, at
               relay's per-endpoint concurrency (8) and at its total (64). Per second, first received to last.
  throughput   N deliveries queued before `relay serve` starts (through the store's own ingest: N final
               callbacks, one subscription), drained to one receiver, on SQLite and on PostgreSQL (a scratch
               database this run creates and drops). Deliveries per second, first received to last received.
  fanout       one final callback for a source with 1,000 subscriptions: ms from sending the callback to the
               first, median and last receipt, on both backends, in two layouts: 1,000 endpoints (a port
               each, as 1,000 customers would be) and all on one endpoint (endpoint_concurrency bounds it).
               Baseline: the same POSTs from plain aiohttp and httpx senders, first request to last answer.

Layout: the receiver (raw asyncio protocols on uvloop that answer 200 at once and stamp each request with the
monotonic clock, which is system-wide) runs in its own process on CPU 1, beside this mostly idle one; the
sender (a plain client, or `relay serve`) runs in its own process on CPU 0. PostgreSQL is not pinned. Every
sender runs once per round, and rounds repeat: compare ratios within a run, not figures across runs.

`--also DIR` adds the relay package found in DIR as another sender (e.g. the last commit's, unpacked with
`git archive HEAD relay | tar -x -C /tmp/before`), to compare two deliverers in one run.

Run: .venv/bin/python bench/deliveries.py [--deliveries 20000] [--subscriptions 1000] [--runs 3]
                                          [--backends sqlite,postgres] [--also DIR] [--no-pin]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import hashlib
import hmac
import importlib.util
import json
import os
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any

import orjson
from _harness import (
    API_KEY,
    CLIENT_CPU,
    PYTHON,
    SECRET,
    SERVER_CPU,
    Connection,
    Server,
    median,
    raise_nofile,
    run,
    scratch_postgres,
    serve,
    setup,
    signed_callback,
    write_json,
)

CONCURRENCY = 64  # relay's default delivery_concurrency
ENDPOINT_CONCURRENCY = 8  # relay's default endpoint_concurrency
CLIENTS = ("httpx", "httpx-aiohttp", "aiohttp")
RESULT_WITHIN_S = 600.0
_OK = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\ncontent-type: text/plain\r\n\r\nok"


# --- the receiver (its own process) -----------------------------------------------------------------------


class _Tally:
    """What the receiver heard since the last `expect`: (webhook-id, arrival) pairs, and who waits for N."""

    def __init__(self) -> None:
        self.log: list[tuple[bytes, float]] = []
        self.target = 0
        self.reached: asyncio.Future[None] | None = None

    def add(self, msg_id: bytes, at: float) -> None:
        self.log.append((msg_id, at))
        if len(self.log) == self.target and self.reached is not None and not self.reached.done():
            self.reached.set_result(None)


class _Subscriber(asyncio.Protocol):
    """Answers every request 200 at once, telling the tally its webhook-id and arrival time."""

    def __init__(self, tally: _Tally) -> None:
        self._tally = tally
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
            self._tally.add(_header(head, b"webhook-id"), time.monotonic())
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


async def _receive(ports: int) -> None:
    """Listen on `ports` ports, print them, then answer `expect N` lines on stdin: "ok" at once, and a JSON
    line of first/median/last arrival once N requests came."""
    loop = asyncio.get_running_loop()
    tally = _Tally()
    servers = [await loop.create_server(lambda: _Subscriber(tally), "127.0.0.1", 0) for _ in range(ports)]
    print(json.dumps([s.sockets[0].getsockname()[1] for s in servers]), flush=True)
    while line := await loop.run_in_executor(None, sys.stdin.readline):
        tally.log = []
        tally.target = int(line.split()[1])
        tally.reached = loop.create_future()
        print("ok", flush=True)
        await tally.reached
        times = sorted(t for _, t in tally.log)
        summary = {
            "count": len(times),
            "distinct": len({msg_id for msg_id, _ in tally.log}),
            "first": times[0],
            "median": statistics.median(times),
            "last": times[-1],
        }
        print(json.dumps(summary), flush=True)


class Receiver:
    """The receiver process, seen from here."""

    def __init__(self, proc: asyncio.subprocess.Process, ports: list[int]) -> None:
        self._proc = proc
        self.ports = ports

    @classmethod
    async def start(cls, ports: int, pin: bool) -> Receiver:
        argv = [
            PYTHON,
            str(Path(__file__)),
            "receiver",
            "--ports",
            str(ports),
            *(() if pin else ("--no-pin",)),
        ]
        proc = await asyncio.create_subprocess_exec(
            *argv, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, limit=2**20
        )
        assert proc.stdout is not None
        return cls(proc, json.loads(await proc.stdout.readline()))

    async def expect(self, n: int) -> asyncio.Task[dict[str, float]]:
        """Tell the receiver to count N requests from now; the task is their arrival summary."""
        assert self._proc.stdin is not None and self._proc.stdout is not None
        self._proc.stdin.write(f"expect {n}\n".encode())
        await self._proc.stdin.drain()
        assert (await self._proc.stdout.readline()).strip() == b"ok"
        stdout = self._proc.stdout

        async def summary() -> dict[str, float]:
            async with asyncio.timeout(RESULT_WITHIN_S):
                got: dict[str, float] = json.loads(await stdout.readline())
            return got

        return asyncio.create_task(summary())

    async def stop(self) -> None:
        """Stop it even while it waits for requests that will not come (a sender that failed)."""
        self._proc.terminate()
        await self._proc.wait()


def _rate(summary: dict[str, float]) -> float:
    """Requests per second, first received to last received."""
    return (summary["count"] - 1) / (summary["last"] - summary["first"])


# --- plain senders (their own process) --------------------------------------------------------------------


def _signed(i: int, key: bytes) -> tuple[bytes, dict[str, str]]:
    """The i-th POST's body and headers, signed as relay signs a delivery (about a job event's size)."""
    body = b'{"id":"evt_%d","type":"job.succeeded","data":"%s"}' % (i, b"x" * 330)
    msg_id, ts = f"evt_{i}", str(int(time.time()))
    digest = hmac.new(key, b"%s.%s.%s" % (msg_id.encode(), ts.encode(), body), hashlib.sha256).digest()
    return body, {
        "content-type": "application/json",
        "webhook-id": msg_id,
        "webhook-timestamp": ts,
        "webhook-signature": "v1," + base64.b64encode(digest).decode(),
    }


async def _send_all(client: str, ports: list[int], n: int, concurrency: int) -> float:
    """N signed POSTs (request i to ports[i % len]) over one pooled client of the kind named, `concurrency`
    at a time; answers the seconds from the first request to the last answer."""
    key = base64.b64decode(SECRET.removeprefix("whsec_"))
    urls = [f"http://127.0.0.1:{port}/hook" for port in ports]
    pending = iter(range(n))  # shared by the workers: each takes the next request number

    if client == "aiohttp":
        import aiohttp

        connector = aiohttp.TCPConnector(limit=concurrency)
        timeout = aiohttp.ClientTimeout(total=15)
        async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:

            async def worker() -> None:
                for i in pending:
                    body, headers = _signed(i, key)
                    url = urls[i % len(urls)]
                    async with session.post(url, data=body, headers=headers, allow_redirects=False) as r:
                        await r.read()
                        assert r.status == 200

            started = time.monotonic()
            await asyncio.gather(*(worker() for _ in range(concurrency)))
            return time.monotonic() - started

    import httpx

    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    if client == "httpx-aiohttp":
        from httpx_aiohttp import HttpxAiohttpClient

        http: httpx.AsyncClient = HttpxAiohttpClient(limits=limits, timeout=15, trust_env=False)
    else:
        http = httpx.AsyncClient(limits=limits, timeout=15, follow_redirects=False, trust_env=False)
    async with http:

        async def send() -> None:
            for i in pending:
                body, headers = _signed(i, key)
                response = await http.post(urls[i % len(urls)], content=body, headers=headers)
                assert response.status_code == 200

        started = time.monotonic()
        await asyncio.gather(*(send() for _ in range(concurrency)))
        return time.monotonic() - started


async def plain_sender(client: str, ports: list[int], n: int, concurrency: int, pin: bool) -> float:
    """Seconds a plain sender took for N POSTs, run in its own process on the sender CPU."""
    argv = [PYTHON, str(Path(__file__)), "sender", "--client", client, "--ports", ",".join(map(str, ports))]
    argv += ["--deliveries", str(n), "--concurrency", str(concurrency), *(() if pin else ("--no-pin",))]
    proc = await asyncio.create_subprocess_exec(*argv, stdout=asyncio.subprocess.PIPE)
    out, _ = await proc.communicate()
    assert proc.returncode == 0, f"the {client} sender failed"
    return float(out)


# --- relay, on either backend -----------------------------------------------------------------------------


@asynccontextmanager
async def database(backend: str, workdir: Path) -> AsyncIterator[str]:
    """A fresh database URL: a SQLite file in `workdir`, or a scratch PostgreSQL database dropped after."""
    if backend == "sqlite":
        yield f"sqlite:///{workdir / 'relay.db'}"
        return
    async with scratch_postgres("deliveries") as url:
        yield url


@contextmanager
def relay_serve(workdir: Path, url: str, package_dir: Path | None = None) -> Iterator[Server]:
    """`relay serve` on `url` with default delivery settings, loopback subscribers allowed, on the sender CPU
    (the relay package of `package_dir` when given)."""
    kind = "relay" if package_dir is None else f"relay@{package_dir}"
    with serve(kind, workdir, url, allow_private_destinations=True) as server:
        yield server


async def _preload(url: str, subscriber_url: str, n: int) -> None:
    """N final callbacks through the store's ingest, with one subscription: N deliveries due now."""
    from relay.models import Callback, Status
    from relay.store import open_store

    store = await open_store(url)
    try:
        await store.create_subscription(subscriber_url, None, None, SECRET, time.time())
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


async def preload(url: str, subscriber_url: str, n: int, package_dir: Path | None) -> None:
    """`_preload` in a process of its own, with the relay package that will serve the database (whose
    schema it must write)."""
    env = None if package_dir is None else {**os.environ, "PYTHONPATH": str(package_dir)}
    argv = [PYTHON, str(Path(__file__)), "preload", "--database", url, "--url", subscriber_url]
    proc = await asyncio.create_subprocess_exec(*argv, "--deliveries", str(n), env=env)
    assert await proc.wait() == 0, "preloading the deliveries failed"


async def relay_throughput(
    receiver: Receiver, backend: str, n: int, package_dir: Path | None = None
) -> float:
    with tempfile.TemporaryDirectory(prefix="relay-bench-") as tmp:
        async with database(backend, Path(tmp)) as url:
            await preload(url, f"http://127.0.0.1:{receiver.ports[0]}/hook", n, package_dir)
            received = await receiver.expect(n)
            with relay_serve(Path(tmp), url, package_dir):
                summary = await received
    assert summary["distinct"] == n, summary
    return _rate(summary)


async def _api(conn: Connection, method: str, path: str, doc: dict[str, Any] | None = None) -> Any:
    body = b"" if doc is None else orjson.dumps(doc)
    raw = (
        f"{method} {path} HTTP/1.1\r\nhost: 127.0.0.1\r\nauthorization: Bearer {API_KEY}\r\n"
        f"content-type: application/json\r\ncontent-length: {len(body)}\r\n\r\n"
    ).encode() + body
    status, answer, _ = await conn.request(raw)
    assert 200 <= status < 300, answer
    return orjson.loads(answer)


async def relay_fanout(
    receiver: Receiver,
    backend: str,
    subscriptions: int,
    endpoints: int,
    runs: int,
    package_dir: Path | None = None,
) -> list[dict[str, float]]:
    """`runs` results, each fanned out to every subscription; ms from sending the callback."""
    results = []
    with tempfile.TemporaryDirectory(prefix="relay-bench-") as tmp:
        async with database(backend, Path(tmp)) as url:
            with relay_serve(Path(tmp), url, package_dir) as relay:
                api = await Connection.open(relay.port)
                for i in range(subscriptions):
                    port = receiver.ports[i % endpoints]
                    await _api(api, "POST", "/v1/subscriptions", {"url": f"http://127.0.0.1:{port}/hook/{i}"})
                for _ in range(runs):
                    received = await receiver.expect(subscriptions)
                    sent, sent_perf = time.monotonic(), time.perf_counter()
                    status, _, acked = await api.request(signed_callback(f"fanout-{uuid.uuid4().hex}"))
                    assert status == 200
                    summary = await received
                    assert summary["distinct"] == 1  # one event, one webhook-id everywhere
                    results.append(
                        {
                            "ack_ms": (acked - sent_perf) * 1000,
                            "first_ms": (summary["first"] - sent) * 1000,
                            "median_ms": (summary["median"] - sent) * 1000,
                            "last_ms": (summary["last"] - sent) * 1000,
                        }
                    )
                api.close()
    return results


# --- the run ----------------------------------------------------------------------------------------------


def _clients(wanted: str) -> list[str]:
    clients = [c for c in wanted.split(",") if c]
    if "httpx-aiohttp" in clients and importlib.util.find_spec("httpx_aiohttp") is None:
        print("httpx-aiohttp is not installed: its sender is left out", flush=True)
        clients.remove("httpx-aiohttp")
    return clients


def _med(values: list[float]) -> float:
    return median(values) if values else float("nan")


def _ratio(values: list[float], baseline: list[float]) -> float:
    """The median over the rounds of each round's value against the baseline's in that round."""
    return _med([value / base for value, base in zip(values, baseline, strict=True)])


async def bench(args: argparse.Namespace) -> None:
    pin = not args.no_pin
    clients = _clients(args.clients)
    backends = [b for b in args.backends.split(",") if b]
    relays = [(f"relay ({b})", b, None) for b in backends]
    if args.also is not None:
        relays += [(f"relay@{args.also.name} ({b})", b, args.also.resolve()) for b in backends]
    receiver = await Receiver.start(max(args.subscriptions, 1), pin)
    rates: dict[str, list[float]] = {}
    fanouts: dict[str, list[dict[str, float]]] = {}
    try:
        for run_no in range(args.runs):
            print(f"round {run_no + 1}/{args.runs}", flush=True)
            for client in clients:
                for concurrency in (ENDPOINT_CONCURRENCY, CONCURRENCY):
                    received = await receiver.expect(args.deliveries)
                    await plain_sender(client, receiver.ports[:1], args.deliveries, concurrency, pin)
                    name = f"{client}, {concurrency} in flight"
                    rates.setdefault(name, []).append(_rate(await received))
                    print(f"  {name:32} {rates[name][-1]:>8,.0f} POSTs/s", flush=True)
            for name, backend, package_dir in relays:
                rate = await relay_throughput(receiver, backend, args.deliveries, package_dir)
                rates.setdefault(name, []).append(rate)
                print(f"  {name:32} {rate:>8,.0f} deliveries/s", flush=True)
            for endpoints in (args.subscriptions, 1):
                layout = f"{endpoints} endpoint(s)"
                for name, backend, package_dir in relays:
                    key = f"{name}, {layout}"
                    (one,) = await relay_fanout(
                        receiver, backend, args.subscriptions, endpoints, 1, package_dir
                    )
                    fanouts.setdefault(key, []).append(one)
                    print(f"  fan-out {key:40} last {one['last_ms']:>7.0f} ms", flush=True)
                concurrency = ENDPOINT_CONCURRENCY if endpoints == 1 else CONCURRENCY
                for client in ("aiohttp", "httpx"):
                    key = f"plain {client}, {layout}"
                    ports = [receiver.ports[i % endpoints] for i in range(args.subscriptions)]
                    seconds = await plain_sender(client, ports, args.subscriptions, concurrency, pin)
                    fanouts.setdefault(key, []).append({"last_ms": seconds * 1000})
                    print(f"  fan-out {key:40} last {seconds * 1000:>7.0f} ms", flush=True)
    finally:
        await receiver.stop()

    summary: dict[str, Any] = {
        "deliveries": args.deliveries,
        "subscriptions": args.subscriptions,
        "throughput_per_s": {name: {"median": _med(v), "runs": v} for name, v in rates.items()},
        "fanout_ms": {
            name: {
                **{k: _med([r[k] for r in runs]) for k in runs[0]},
                "runs_last_ms": [r["last_ms"] for r in runs],
            }
            for name, runs in fanouts.items()
        },
    }
    print(f"\nto one fast receiver ({args.deliveries:,} requests), median of {args.runs} round(s):")
    print("  (each ratio: against a plain sender at 8 in flight in the same round, median over the rounds)")
    for name, values in rates.items():
        ratios = "  ".join(
            f"{_ratio(values, rates[f'{c}, {ENDPOINT_CONCURRENCY} in flight']):.2f}x {c}" for c in clients
        )
        spread = ", ".join(f"{v:,.0f}" for v in values)
        print(f"  {name:32} {_med(values):>8,.0f}/s  ({spread})  {ratios}")
    print(f"\nfan-out of one result to {args.subscriptions:,} subscriptions, ms from sending it (median):")
    print(f"  {'':48} {'ack':>6} {'first':>6} {'median':>6} {'last':>6}")
    for name in fanouts:
        f = summary["fanout_ms"][name]
        cells = [f"{f[k]:>6.0f}" if k in f else f"{'':>6}" for k in ("ack_ms", "first_ms", "median_ms")]
        print(f"  {name:48} {' '.join(cells)} {f['last_ms']:>6.0f}")
    path = write_json("deliveries", summary, args.json)
    print(f"  (written to {path})")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "mode", nargs="?", default="bench", choices=["bench", "sender", "receiver", "preload"]
    )
    parser.add_argument("--database", default="", help="(preload mode) the database URL")
    parser.add_argument("--url", default="", help="(preload mode) the subscriber's URL")
    parser.add_argument("--deliveries", type=int, default=20_000)
    parser.add_argument("--subscriptions", type=int, default=1_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--clients", default=",".join(CLIENTS), help="plain senders, comma-separated")
    parser.add_argument("--backends", default="sqlite,postgres", help="relay's stores, comma-separated")
    parser.add_argument("--also", type=Path, default=None, help="a directory holding another relay package")
    parser.add_argument("--client", default="aiohttp", choices=CLIENTS, help="(sender mode)")
    parser.add_argument(
        "--ports", default="1", help="(sender mode) ports, comma-separated; (receiver) how many"
    )
    parser.add_argument("--concurrency", type=int, default=CONCURRENCY, help="(sender mode)")
    parser.add_argument("--json", type=Path, default=None, help="write results here (default bench/results/)")
    parser.add_argument(
        "--no-pin", action="store_true", help="do not pin sender and receiver to CPUs 0 and 1"
    )
    args = parser.parse_args()
    two_cpus = len(os.sched_getaffinity(0)) >= 2 and not args.no_pin
    if args.mode == "sender":
        if two_cpus:
            os.sched_setaffinity(0, {SERVER_CPU})
        ports = [int(p) for p in args.ports.split(",")]
        print(run(_send_all(args.client, ports, args.deliveries, args.concurrency)))
        return
    if args.mode == "preload":
        run(_preload(args.database, args.url, args.deliveries))
        return
    if args.mode == "receiver":
        raise_nofile()
        if two_cpus:
            os.sched_setaffinity(0, {CLIENT_CPU})
        run(_receive(int(args.ports)))
        return
    setup(pin=not args.no_pin)
    run(bench(args))


if __name__ == "__main__":
    main()
