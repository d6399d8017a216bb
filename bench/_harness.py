"""Benchmark plumbing shared by bench/*.py: servers in their own process, a raw HTTP/1.1 client, signing.

The benchmarks measure the server, so the client side is kept as cheap as Python allows: requests are
built (and signed) before the clock starts, written as prebuilt bytes on keep-alive connections, and
responses are parsed just far enough to find their end. The server runs in a child process pinned to CPU 0,
the client in this process pinned to CPU 1 (when the machine has two CPUs; `--no-pin` turns it off).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import hashlib
import hmac
import json
import os
import resource
import signal
import socket
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any, TypeVar, cast

BENCH = Path(__file__).resolve().parent
RESULTS = BENCH / "results"
PYTHON = sys.executable
SERVER_CPU, CLIENT_CPU = 0, 1
API_KEY = "bench-api-key"
SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
# The PostgreSQL server benchmarks make scratch databases on (its `postgres` database is the admin one).
POSTGRES_URL = os.environ.get("RELAY_BENCH_POSTGRES", "postgresql://postgres@127.0.0.1:5432/postgres")
HOST = "127.0.0.1"
T = TypeVar("T")

_pinning = True


def setup(pin: bool) -> None:
    """Raise this process's open-file limit, and pin it to the client CPU unless told not to."""
    global _pinning
    _pinning = pin and len(os.sched_getaffinity(0)) >= 2
    raise_nofile()
    if _pinning:
        os.sched_setaffinity(0, {CLIENT_CPU})


def options(doc: str | None, runs: int) -> argparse.ArgumentParser:
    """A parser with the options every benchmark takes: --runs, --json, --no-pin."""
    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=runs)
    parser.add_argument("--json", type=Path, default=None, help="write results here (default bench/results/)")
    parser.add_argument("--no-pin", action="store_true", help="do not pin server and client to CPUs 0 and 1")
    return parser


def main(
    parser: argparse.ArgumentParser, bench: Callable[[argparse.Namespace], Coroutine[Any, Any, None]]
) -> None:
    """Parse the options, set this process up, and run `bench(args)` on uvloop."""
    args = parser.parse_args()
    setup(pin=not args.no_pin)
    run(bench(args))


def run(main: Coroutine[Any, Any, T]) -> T:
    """Run the client side on uvloop, as the server runs."""
    import uvloop

    return uvloop.run(main)


def raise_nofile() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


# --- servers -----------------------------------------------------------------------------------------


class Server:
    """A server child process (relay, or one of bench/apps.py) on a free loopback port."""

    def __init__(self, argv: Sequence[str], port: int, log: Path, env: dict[str, str] | None = None) -> None:
        self.port = port
        self._log = log
        with log.open("wb") as out:
            self._proc = subprocess.Popen(
                argv,
                stdout=out,
                stderr=subprocess.STDOUT,
                preexec_fn=self._child_setup,
                cwd=log.parent,
                env=env,
            )
        self.pid = self._proc.pid

    @staticmethod
    def _child_setup() -> None:
        raise_nofile()
        if _pinning:
            os.sched_setaffinity(0, {SERVER_CPU})

    def wait_ready(self, within: float = 60.0) -> None:
        """Wait until the port accepts connections (uvicorn listens only after the lifespan started)."""
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise RuntimeError(f"server exited early:\n{self._log.read_text()[-2000:]}")
            try:
                socket.create_connection((HOST, self.port), timeout=0.2).close()
                return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"server did not listen within {within} s:\n{self._log.read_text()[-2000:]}")

    def rss_kib(self) -> int:
        """Resident set size now (VmRSS), in KiB."""
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        raise RuntimeError("no VmRSS")

    def cpu_seconds(self, main_thread: bool = False) -> float:
        """User plus system CPU time so far, of the whole process or of its main (event loop) thread."""
        stat = f"/proc/{self.pid}/task/{self.pid}/stat" if main_thread else f"/proc/{self.pid}/stat"
        fields = Path(stat).read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def stop(self) -> None:
        if self._proc.poll() is None:
            self._proc.send_signal(signal.SIGINT)
            try:
                self._proc.wait(15)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()


def postgres_database_url(name: str) -> str:
    """The URL of database `name` on the benchmarks' PostgreSQL server."""
    return f"{POSTGRES_URL.rpartition('/')[0]}/{name}"


async def postgres_admin(sql: str) -> None:
    """Run one statement on the server's admin database (CREATE/DROP DATABASE)."""
    import asyncpg

    conn = await asyncpg.connect(POSTGRES_URL)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


@asynccontextmanager
async def scratch_postgres(label: str, template: str | None = None) -> AsyncIterator[str]:
    """A new PostgreSQL database (empty, or a copy of `template`) for one run, dropped afterwards; its URL."""
    name = f"relay_bench_{label}_{uuid.uuid4().hex[:8]}"
    await postgres_admin(f"CREATE DATABASE {name}" + (f" TEMPLATE {template}" if template else ""))
    try:
        yield postgres_database_url(name)
    finally:
        await postgres_admin(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def write_relay_config(workdir: Path, database: str | None = None, **extra: Any) -> Path:
    """A relay config in `workdir`: `database` (default SQLite there), one API key, a `demo` source."""
    database = database or f"sqlite:///{workdir / 'relay.db'}"
    lines = [
        f'database = "{database}"',
        'secret_key = "bench-secret-key"',
        f'api_keys = ["{API_KEY}"]',
        *(f"{key} = {json.dumps(value)}" for key, value in extra.items()),
        "",
        "[sources.demo]",
        'kind = "standard-webhooks"',
        f'secret = "{SECRET}"',
    ]
    path = workdir / "relay.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


@contextmanager
def serve(kind: str, workdir: Path, database: str | None = None, **relay_config: Any) -> Iterator[Server]:
    """Run `relay` (through `relay serve`) or a baseline app of bench/apps.py until the block ends.

    `relay-normal` is relay with `sqlite_synchronous = "normal"` (no fsync per commit); `relay-nostore` is
    the diagnostic of bench/apps.py. `relay@DIR` runs the relay package found in DIR instead of the installed
    one, to compare two checkouts in one run (`git worktree add /tmp/before HEAD~3`, then
    `--targets bare,relay,relay@/tmp/before`). `database` puts relay on another database (PostgreSQL).
    """
    workdir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    env = None
    if kind in ("relay", "relay-normal") or kind.startswith("relay@"):
        if kind.startswith("relay@"):
            env = {**os.environ, "PYTHONPATH": str(Path(kind.removeprefix("relay@")).resolve())}
        if kind == "relay-normal":
            relay_config = {**relay_config, "sqlite_synchronous": "normal"}
        config = write_relay_config(workdir, database, **relay_config)
        argv = [PYTHON, "-m", "relay", "serve", "--config", str(config), "--port", str(port)]
    elif kind == "relay-nostore":
        config = write_relay_config(workdir, **relay_config)
        argv = [PYTHON, str(BENCH / "apps.py"), kind, "--port", str(port), "--config", str(config)]
    else:
        argv = [PYTHON, str(BENCH / "apps.py"), kind, "--port", str(port), "--db", str(workdir / "min.db")]
    server = Server(argv, port, workdir / "server.log", env)
    try:
        server.wait_ready()
        yield server
    finally:
        server.stop()


# --- requests ----------------------------------------------------------------------------------------


def _hmac_key() -> bytes:
    return base64.b64decode(SECRET.removeprefix("whsec_"))


def signed_callback(job_id: str, status: str = "succeeded", timestamp: int | None = None) -> bytes:
    """A whole `POST /hooks/demo` request, signed the Standard Webhooks way, as bytes on the wire."""
    body = b'{"id":"%s","status":"%s","output":{"url":"https://cdn.example.com/out/%s.png"},"error":null}' % (
        job_id.encode(),
        status.encode(),
        job_id.encode(),
    )
    msg_id = f"msg_{job_id}"
    ts = str(int(time.time()) if timestamp is None else timestamp)
    digest = hmac.new(_hmac_key(), b"%s.%s.%s" % (msg_id.encode(), ts.encode(), body), hashlib.sha256)
    signature = "v1," + base64.b64encode(digest.digest()).decode()
    head = (
        f"POST /hooks/demo HTTP/1.1\r\nhost: {HOST}\r\ncontent-type: application/json\r\n"
        f"content-length: {len(body)}\r\nwebhook-id: {msg_id}\r\nwebhook-timestamp: {ts}\r\n"
        f"webhook-signature: {signature}\r\n\r\n"
    )
    return head.encode() + body


def get_request(path: str, api_key: bool = True) -> bytes:
    auth = f"authorization: Bearer {API_KEY}\r\n" if api_key else ""
    return f"GET {path} HTTP/1.1\r\nhost: {HOST}\r\n{auth}\r\n".encode()


# --- a raw HTTP/1.1 client ---------------------------------------------------------------------------


def _response_end(buf: bytearray) -> tuple[int, int, int] | None:
    """(status, body start, body end) of the first complete response in `buf`, or None for not yet."""
    head_end = buf.find(b"\r\n\r\n")
    if head_end < 0:
        return None
    head = bytes(buf[:head_end]).lower()
    at = head.find(b"\r\ncontent-length:")
    length = 0
    if at >= 0:
        stop = head.find(b"\r\n", at + 2)
        length = int(head[at + 17 : stop if stop > 0 else len(head)])
    if len(buf) < head_end + 4 + length:
        return None
    return int(head[9:12]), head_end + 4, head_end + 4 + length


class Connection(asyncio.Protocol):
    """One keep-alive connection, one request at a time; answers carry the time their last byte came."""

    def __init__(self) -> None:
        self._buf = bytearray()
        self._pending: asyncio.Future[tuple[int, bytes, float]] | None = None
        self.transport: asyncio.Transport | None = None

    @classmethod
    async def open(cls, port: int) -> Connection:
        _, conn = await asyncio.get_running_loop().create_connection(cls, HOST, port)
        return conn

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's transports are not subclasses

    def connection_lost(self, exc: Exception | None) -> None:
        if self._pending is not None and not self._pending.done():
            self._pending.set_exception(ConnectionError("the server closed the connection"))
            self._pending.exception()  # raised to whoever awaits it; no "never retrieved" noise otherwise

    def data_received(self, data: bytes) -> None:
        self._buf += data
        if self._pending is None:
            return
        found = _response_end(self._buf)
        if found is not None:
            status, start, end = found
            body = bytes(self._buf[start:end])
            del self._buf[:end]
            pending, self._pending = self._pending, None
            pending.set_result((status, body, time.perf_counter()))

    def send(self, raw: bytes) -> asyncio.Future[tuple[int, bytes, float]]:
        """Write a request; the future is its (status, body, perf_counter at arrival)."""
        assert self.transport is not None and self._pending is None
        self._pending = asyncio.get_running_loop().create_future()
        self.transport.write(raw)
        return self._pending

    async def request(self, raw: bytes) -> tuple[int, bytes, float]:
        return await self.send(raw)

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()


async def open_connections(port: int, count: int, batch: int = 500) -> list[Connection]:
    conns: list[Connection] = []
    while len(conns) < count:
        n = min(batch, count - len(conns))
        conns += await asyncio.gather(*(Connection.open(port) for _ in range(n)))
    return conns


async def relay_waiters(conn: Connection) -> int:
    """How many long-poll waiters the relay holds now (its `relay_waiters` gauge)."""
    status, body, _ = await conn.request(get_request("/metrics", api_key=False))
    assert status == 200, body
    for line in body.decode().splitlines():
        if line.startswith("relay_waiters "):
            return int(float(line.split()[1]))
    raise RuntimeError("no relay_waiters gauge in /metrics")


async def until(condition: Any, within: float = 60.0, every: float = 0.001) -> None:
    """Await `condition()` (a coroutine function answering bool) until it holds; fail after `within` s."""
    deadline = time.monotonic() + within
    while not await condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"condition not met within {within} s")
        await asyncio.sleep(every)


# --- reporting ---------------------------------------------------------------------------------------


def median(values: Sequence[float]) -> float:
    return statistics.median(values)


def percentile(values: Sequence[float], p: float) -> float:
    """The p-th percentile (nearest rank) of `values`."""
    ordered = sorted(values)
    rank = max(0, min(len(ordered) - 1, round(p / 100 * len(ordered) + 0.5) - 1))
    return ordered[rank]


def machine() -> dict[str, Any]:
    model = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        "unknown",
    )
    return {
        "cpus": os.cpu_count(),
        "cpu_model": model,
        "python": sys.version.split()[0],
        "pinned": _pinning,
    }


def label(target: str) -> str:
    """A target name fit for a directory name."""
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in target)


def write_json(name: str, data: dict[str, Any], path: Path | None = None) -> Path:
    """Write `data` (with the machine description) to bench/results/NAME.json or `path`."""
    path = path or RESULTS / f"{name}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"machine": machine(), "argv": sys.argv, **data}, indent=2) + "\n")
    return path
