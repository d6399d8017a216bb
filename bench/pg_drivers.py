"""Benchmark: relay's PostgreSQL ingest transaction through asyncpg and through psycopg 3 (issue 15).

Each transaction is what `PostgresStore.ingest` commits for a callback that creates its job (the common case:
providers issue unique job IDs), with relay's own SQL (imported from relay/store/postgres/jobs.py) on a
scratch database migrated by relay:

  BEGIN
  INSERT INTO jobs ... ON CONFLICT DO NOTHING RETURNING id, pg_notify(...)   (the NOTIFY rides the insert)
  WITH entry AS (INSERT INTO callbacks ... RETURNING id) SELECT ... LEFT JOIN subscriptions  (history, event)
  COMMIT

  asyncpg           asyncpg.create_pool (10), statements prepared and cached as asyncpg does by default,
                    `async with pool.acquire() as conn, conn.transaction()`, as relay runs it
  psycopg           psycopg 3 (binary) + psycopg_pool.AsyncConnectionPool (10), prepare_threshold=0, raw
                    ($n) cursors, autocommit connections with `conn.transaction()`
  psycopg-pipeline  the same, the transaction's statements in pipeline mode: BEGIN goes out with the insert,
                    and the insert's id is read before the history statement needs it (3 round trips, not 4)
  pgbench           PostgreSQL's own limit: the same statements as a pgbench script (-M prepared, C, one
                    thread), as many connections as the pool would use (min(C, pool))

C tasks (1, 8, 64) each run transactions back to back for --seconds; per transaction: latency from asking
for a connection to COMMIT answered (queueing for the pool included), and this process's CPU (user + system)
per transaction. The variants take turns within each round, in an order rotated round by round, on the same
database (emptied between them); ratios are taken within a round, and the medians over rounds reported.

Run: .venv/bin/python bench/pg_drivers.py [--runs 5] [--seconds 2] [--concurrency 1,8,64] [--json PATH]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import resource
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import asyncpg
import orjson
import psycopg
from _harness import main, median, options, percentile, scratch_postgres, write_json
from psycopg_pool import AsyncConnectionPool

from relay.domain.jobs import new_event_id, new_job_from_callback
from relay.models import Callback, Event, Status
from relay.store.postgres.jobs import _INSERT_JOB_NOTIFYING, _RECORD_EVENT, moved
from relay.store.postgres.migrations import migrate_url
from relay.store.postgres.notify import job_payload

VARIANTS = ("asyncpg", "psycopg", "psycopg-pipeline", "pgbench")
# A transaction's parameters: the job insert's, and the history statement's after the job's row id.
Params = tuple[tuple[Any, ...], tuple[Any, ...]]
# pgbench's transaction: the same statements with literal values where relay binds its job's.
_PGBENCH_SCRIPT = r"""\set r random(1, 1000000000000)
BEGIN;
INSERT INTO jobs (source, job_id, created_at, reconcile_at, status, late, result, error, metadata,
  subscribers, timeout_s, updated_at, finished_at, deadline, callbacks)
  VALUES ('demo', 'pgbench-' || :client_id || '-' || :r, 1, NULL, 'succeeded', false,
  convert_to('{"url":"https://cdn.example.com/out/x.png"}', 'UTF8'), NULL, '\x7b7d', '\x5b5d', NULL,
  1, 1, 301, 1) ON CONFLICT (source, job_id) DO NOTHING
  RETURNING id AS job_row, pg_notify('relay_jobs', 'x' || :r) AS sent \gset
WITH entry AS (INSERT INTO callbacks
  (job_row, delivery_id, received_at, status, via, body, event_id, type, data)
  VALUES (:job_row, 'msg_' || :r, 1, 'succeeded', 'webhook', convert_to(repeat('x', 180), 'UTF8'),
  'evt_' || :r, 'job.succeeded', convert_to(repeat('y', 400), 'UTF8'))
  ON CONFLICT (job_row, delivery_id) DO NOTHING RETURNING id)
SELECT entry.id, s.id, s.url, s.source, s.events
  FROM entry LEFT JOIN subscriptions s ON s.disabled_at IS NULL;
END;
"""


def transactions(count: int) -> list[Params]:
    """`count` transactions' parameters, each for a new job, built by relay's own rules before the clock."""
    made: list[Params] = []
    for _ in range(count):
        job_id = uuid.uuid4().hex
        body = b'{"id":"%s","status":"succeeded","output":{"url":"https://cdn.example.com/out/%s.png"}}' % (
            job_id.encode(),
            job_id.encode(),
        )
        cb = Callback(job_id, Status.SUCCEEDED, f"msg_{job_id}", body, {"url": f"https://x/{job_id}.png"})
        now = time.time()
        job = new_job_from_callback("demo", cb, now, 300.0)
        insert = ("demo", job_id, job.created_at, None, *moved(job), job_payload("demo", job_id))
        kind = Event.type_for(job.status)
        record = (cb.delivery_id, now, cb.status.value, cb.via, cb.body, new_event_id(now), kind)
        made.append((insert, (*record, orjson.dumps(job.to_public()))))
    return made


class Driver:
    """One driver's pool of `size` connections, running relay's ingest transaction."""

    name = ""

    async def open(self, url: str, size: int) -> None:
        raise NotImplementedError

    async def transaction(self, params: Params) -> None:
        raise NotImplementedError

    async def close(self) -> None:
        raise NotImplementedError


async def _keep_session(conn: asyncpg.Connection) -> None:
    """As relay's pool: no reset query when a connection goes back."""


class Asyncpg(Driver):
    name = "asyncpg"

    async def open(self, url: str, size: int) -> None:
        self._pool = await asyncpg.create_pool(url, min_size=size, max_size=size, reset=_keep_session)

    async def transaction(self, params: Params) -> None:
        insert, record = params
        async with self._pool.acquire() as conn, conn.transaction():
            row_id = await conn.fetchval(_INSERT_JOB_NOTIFYING, *insert)
            rows = await conn.fetch(_RECORD_EVENT, row_id, *record)
            assert rows

    async def close(self) -> None:
        await self._pool.close()


class Psycopg(Driver):
    name = "psycopg"
    pipeline = False

    async def open(self, url: str, size: int) -> None:
        settings = {"autocommit": True, "prepare_threshold": 0, "cursor_factory": psycopg.AsyncRawCursor}
        self._pool: AsyncConnectionPool[Any] = AsyncConnectionPool(
            url, min_size=size, max_size=size, kwargs=settings, open=False
        )
        await self._pool.open(wait=True)

    async def transaction(self, params: Params) -> None:
        insert, record = params
        async with self._pool.connection() as conn:
            if self.pipeline:
                async with conn.pipeline():
                    await self._statements(conn, insert, record)
            else:
                await self._statements(conn, insert, record)

    @staticmethod
    async def _statements(conn: psycopg.AsyncConnection[Any], insert: Any, record: Any) -> None:
        async with conn.transaction():
            row = await (await conn.execute(_INSERT_JOB_NOTIFYING, insert)).fetchone()
            assert row is not None
            rows = await (await conn.execute(_RECORD_EVENT, (row[0], *record))).fetchall()
            assert rows

    async def close(self) -> None:
        await self._pool.close()


class PsycopgPipeline(Psycopg):
    name = "psycopg-pipeline"
    pipeline = True


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def drive(driver: Driver, concurrency: int, work: Iterator[Params], seconds: float) -> dict[str, Any]:
    """`concurrency` tasks running transactions back to back until `seconds` pass (or the work runs out)."""
    latencies: list[float] = []
    stop_at = time.perf_counter() + seconds

    async def worker() -> None:
        for params in work:
            started = time.perf_counter()
            await driver.transaction(params)
            latencies.append(time.perf_counter() - started)
            if started > stop_at:
                return

    cpu, started = cpu_seconds(), time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    elapsed, cpu = time.perf_counter() - started, cpu_seconds() - cpu
    return {
        "transactions": len(latencies),
        "tx_per_s": len(latencies) / elapsed,
        "p50_ms": percentile(latencies, 50) * 1000,
        "p99_ms": percentile(latencies, 99) * 1000,
        "cpu_us_per_tx": cpu / len(latencies) * 1e6,
    }


async def pgbench(url: str, clients: int, seconds: float) -> dict[str, Any]:
    """pgbench running the same statements on `clients` connections."""
    with tempfile.NamedTemporaryFile("w", suffix=".sql") as script:
        script.write(_PGBENCH_SCRIPT)
        script.flush()
        argv = ["pgbench", "-n", "-M", "prepared", "-c", str(clients), "-j", "1", "-T", str(round(seconds))]
        proc = await asyncio.create_subprocess_exec(
            *argv, "-f", script.name, url, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
        )
        out, err = await proc.communicate()
    text = out.decode()
    tps = re.search(r"tps = ([0-9.]+)", text)
    latency = re.search(r"latency average = ([0-9.]+) ms", text)
    if proc.returncode != 0 or tps is None or latency is None:
        raise RuntimeError(f"pgbench failed: {err.decode()[-2000:]} {text[-2000:]}")
    # pgbench reports an average latency only; its CPU is another process's.
    return {"tx_per_s": float(tps.group(1)), "p50_ms": float(latency.group(1)), "clients": clients}


async def committed(admin: asyncpg.Connection) -> int:
    """Jobs committed since the last emptying; then empty the tables for the next variant."""
    count: int = await admin.fetchval("SELECT count(*) FROM jobs")
    await admin.execute("TRUNCATE jobs, callbacks CASCADE")
    return count


async def one_round(
    drivers: dict[str, Driver], url: str, admin: asyncpg.Connection, args: argparse.Namespace, turn: int
) -> dict[str, dict[str, Any]]:
    """Every variant at every concurrency, in turn; the variants' order rotated by `turn`."""
    order = list(VARIANTS[turn % len(VARIANTS) :] + VARIANTS[: turn % len(VARIANTS)])
    result: dict[str, dict[str, Any]] = {}
    for concurrency in args.concurrency:
        for name in order:
            if name == "pgbench":
                cell = await pgbench(url, min(concurrency, args.pool), args.seconds)
                await committed(admin)
            else:
                driver = drivers[name]
                await drive(driver, concurrency, iter(transactions(300)), 0.2)  # warm: pool, plans
                await committed(admin)
                work = transactions(int(args.seconds * args.cap))
                cell = await drive(driver, concurrency, iter(work), args.seconds)
                cell["committed"] = await committed(admin)
                if cell["committed"] != cell["transactions"]:
                    raise RuntimeError(f"{name}: {cell['committed']} committed of {cell['transactions']}")
            result[f"{name}@{concurrency}"] = cell
            print(f"  C={concurrency:<3} {name:<17} {_line(cell)}", flush=True)
    return result


def _line(cell: dict[str, Any]) -> str:
    cpu = f" cpu {cell['cpu_us_per_tx']:6.0f} us/tx" if "cpu_us_per_tx" in cell else ""
    p99 = f" p99 {cell['p99_ms']:6.2f} ms" if "p99_ms" in cell else " (average)"
    return f"{cell['tx_per_s']:8.0f} tx/s  p50 {cell['p50_ms']:6.2f} ms{p99}{cpu}"


def summarise(rounds: list[dict[str, dict[str, Any]]], concurrency: list[int]) -> dict[str, Any]:
    """Medians over rounds; each ratio to asyncpg is taken within its round, then the median of the ratios."""
    summary: dict[str, Any] = {}
    for c in concurrency:
        for name in VARIANTS:
            key, base = f"{name}@{c}", f"asyncpg@{c}"
            cells = [r[key] for r in rounds]
            figures = {m: median([x[m] for x in cells]) for m in cells[0] if isinstance(cells[0][m], float)}
            figures["tx_ratio_to_asyncpg"] = median(
                [r[key]["tx_per_s"] / r[base]["tx_per_s"] for r in rounds]
            )
            if "cpu_us_per_tx" in cells[0]:
                cpu_ratios = [r[key]["cpu_us_per_tx"] / r[base]["cpu_us_per_tx"] for r in rounds]
                figures["cpu_ratio_to_asyncpg"] = median(cpu_ratios)
            summary[key] = figures
    return summary


async def bench(args: argparse.Namespace) -> None:
    makers: dict[str, Callable[[], Driver]] = {
        "asyncpg": Asyncpg,
        "psycopg": Psycopg,
        "psycopg-pipeline": PsycopgPipeline,
    }
    async with scratch_postgres("drivers") as url:
        await migrate_url(url)
        drivers = {name: make() for name, make in makers.items()}
        for driver in drivers.values():
            await driver.open(url, args.pool)
        admin = await asyncpg.connect(url)
        rounds = []
        try:
            for turn in range(args.runs):
                print(f"round {turn + 1}/{args.runs} (load average {os.getloadavg()[0]:.2f})", flush=True)
                rounds.append(await one_round(drivers, url, admin, args, turn))
        finally:
            await admin.close()
            for driver in drivers.values():
                await driver.close()
    summary = summarise(rounds, args.concurrency)
    print("\nmedians over rounds (ratio: within a round, to asyncpg at the same C)")
    for key, figures in summary.items():
        cpu = f" cpu x{figures['cpu_ratio_to_asyncpg']:.2f}" if "cpu_ratio_to_asyncpg" in figures else ""
        print(f"  {key:<22} {_line(figures)}  tx/s x{figures['tx_ratio_to_asyncpg']:.2f}{cpu}")
    versions = {"asyncpg": asyncpg.__version__, "psycopg": psycopg.__version__, "libpq": psycopg.pq.version()}
    extra = {"versions": versions, "load_average": os.getloadavg(), "pool": args.pool}
    path = write_json("pg_drivers", {"rounds": rounds, "summary": summary, **extra}, args.json)
    print(f"wrote {path}")


def _parser() -> argparse.ArgumentParser:
    parser = options(__doc__, runs=5)
    parser.add_argument("--seconds", type=float, default=2.0, help="per variant and concurrency, per round")
    parser.add_argument("--concurrency", type=lambda s: [int(c) for c in s.split(",")], default=[1, 8, 64])
    parser.add_argument("--pool", type=int, default=10, help="connections in each driver's pool")
    parser.add_argument("--cap", type=int, default=8000, help="transactions built per second of a run")
    return parser


if __name__ == "__main__":
    main(_parser(), bench)
