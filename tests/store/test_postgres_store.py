"""PostgreSQL only: several relays (pools) on one database agree (two sweepers end each job once, and what
one commits is announced to the others), and the store answers its health check."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import asyncpg
import orjson
import pytest

from relay.errors import ServiceUnavailable
from relay.models import Registration, Status
from relay.store import Store, open_store
from relay.store.postgres.notify import JOBS_CHANNEL
from tests.store.test_deliveries_store import SECRET, URL_A, claim
from tests.store.test_store_contract import T0, TIMEOUT, callback

pytestmark = pytest.mark.postgres


@pytest.fixture
async def two_stores(postgres_database: str) -> AsyncIterator[tuple[Store, Store]]:
    """Two stores, each with its own pool, on one database: two relay processes."""
    first = await open_store(f"{postgres_database}?pool_max=4")
    second = await open_store(f"{postgres_database}?pool_min=2&pool_max=4")
    try:
        yield first, second
    finally:
        await first.close()
        await second.close()


async def test_two_relays_make_one_final_transition(two_stores: tuple[Store, Store]) -> None:
    """Distinct final callbacks for one job through two relays at once: one sets it, the others are kept."""
    outcomes = await asyncio.gather(
        *(
            two_stores[i % 2].ingest("demo", callback("j", Status.SUCCEEDED, f"d{i}", {"i": i}), T0, TIMEOUT)
            for i in range(32)
        )
    )
    assert sum(o.changed for o in outcomes) == 1 and sum(o.duplicate for o in outcomes) == 31
    job = await two_stores[1].get_job("demo", "j")
    assert job is not None and job.callbacks == 32
    assert len(await two_stores[0].list_events("demo", "j")) == 1


async def test_registration_racing_the_first_callback_makes_one_job(two_stores: tuple[Store, Store]) -> None:
    """A registration and the job's first callback through two relays at once: one job with both."""
    first, second = two_stores
    for n in range(8):
        await asyncio.gather(
            first.ingest("demo", callback(f"j{n}", Status.SUCCEEDED, "d1", {"v": n}), T0, TIMEOUT),
            second.register(Registration("demo", f"j{n}", None, (), {"user": n}), T0, TIMEOUT),
        )
        stored = await first.get_job("demo", f"j{n}")
        assert stored is not None and (stored.status, stored.result, stored.metadata) == (
            Status.SUCCEEDED,
            {"v": n},
            {"user": n},
        )
    assert await first.count_jobs_by_status() == {"succeeded": 8}


async def test_time_out_and_a_callback_race_to_one_final_state(two_stores: tuple[Store, Store]) -> None:
    """The sweeper's time-out and a result at once: the job ends once; a result after the time-out is late."""
    first, second = two_stores
    await first.register(Registration("demo", "j", 10.0), T0, TIMEOUT)
    timed_out, result = await asyncio.gather(
        first.time_out("demo", "j", T0 + 11),
        second.ingest("demo", callback("j", Status.SUCCEEDED, "d1", {"v": 1}), T0 + 11, TIMEOUT),
    )
    job = await first.get_job("demo", "j")
    assert job is not None and job.status == Status.SUCCEEDED and result.changed
    assert job.late == (timed_out is not None)
    assert [e.type for e in await first.list_events("demo", "j")][-1] == "job.succeeded"


async def test_ping_tells_a_closed_pool_from_a_live_one(postgres_database: str) -> None:
    """A live database passes the health check; once the pool is gone the check says the database is down."""
    store = await open_store(postgres_database)
    await store.ping()
    await store.close()
    with pytest.raises(ServiceUnavailable) as info:
        await store.ping()
    assert info.value.code == "database_down"


async def test_a_starting_relay_leaves_other_relays_claims_alone(two_stores: tuple[Store, Store]) -> None:
    """Recovery at start takes nothing from a relay still sending: its claim stands until its lease ends."""
    first, second = two_stores
    await first.create_subscription(URL_A, None, None, SECRET, T0)
    await first.ingest("demo", callback("j", Status.SUCCEEDED, "d1"), T0, TIMEOUT)
    (held,) = await claim(first, T0, limit=10, lease_s=60)
    assert await second.recover_deliveries(T0 + 1) == 0
    assert await claim(second, T0 + 1, limit=10, lease_s=60) == []
    (delivery,) = await second.list_deliveries()
    assert (delivery.id, delivery.status.value) == (held.delivery.id, "delivering")


async def test_two_sweepers_racing_time_each_job_out_once(two_stores: tuple[Store, Store]) -> None:
    """Two relays time the same overdue jobs out at once, in opposite orders, with single time-outs among
    them: one time-out per job (one answer, one history entry, one event), and no deadlock."""
    first, second = two_stores
    keys = [("demo", f"j{n}") for n in range(60)]
    for _, job_id in keys:
        await first.register(Registration("demo", job_id, 10.0), T0, TIMEOUT)
    now = T0 + 11
    overdue = await first.overdue_jobs(now, 100)
    assert len(overdue) == len(keys)
    outcomes = await asyncio.gather(
        first.time_out_many(overdue, now),
        second.time_out_many(overdue[::-1], now),
        first.time_out_many(overdue[::2], now),
        *(second.time_out(source, job_id, now) for source, job_id in keys[::3]),
    )
    batches, singles = outcomes[:3], outcomes[3:]
    timed_out: dict[str, int] = {}
    for outcome in [o for batch in batches for o in batch] + list(singles):
        if outcome is not None:
            timed_out[outcome.job.job_id] = timed_out.get(outcome.job.job_id, 0) + 1
    assert timed_out == {job_id: 1 for _, job_id in keys}
    for _, job_id in keys:
        assert [h.via for h in await second.list_callbacks("demo", job_id)] == ["sweep"]
        assert [e.type for e in await first.list_events("demo", job_id)] == ["job.timed_out"]
    assert await first.count_jobs_by_status() == {"timed_out": len(keys)}


async def test_each_job_a_batch_times_out_is_notified_at_commit(
    two_stores: tuple[Store, Store], postgres_database: str
) -> None:
    """Another relay's listening connection hears of every job the batch timed out, and of no other."""
    first, _ = two_stores
    for job_id in ("a", "b", "c"):
        await first.register(Registration("demo", job_id, 10.0), T0, TIMEOUT)
    await first.register(Registration("demo", "not-due", 3600.0), T0, TIMEOUT)
    heard: asyncio.Queue[tuple[str, str]] = asyncio.Queue()
    listening = await asyncpg.connect(postgres_database)
    try:
        await listening.add_listener(
            JOBS_CHANNEL, lambda *args: heard.put_nowait(tuple(orjson.loads(args[3])))
        )
        jobs = [await first.get_job("demo", job_id) for job_id in ("a", "not-due", "b", "c")]
        outcomes = await first.time_out_many([job for job in jobs if job is not None], T0 + 11)
        assert [o is not None for o in outcomes] == [True, False, True, True]
        got = [await asyncio.wait_for(heard.get(), 5) for _ in range(3)]
        # A marker sent after the commit arrives after everything the commit sent: nothing else was.
        await first.time_out_many([job for job in jobs[1:2] if job is not None], T0 + 3601)
        marker = await asyncio.wait_for(heard.get(), 5)
    finally:
        await listening.close()
    assert sorted(got) == [("demo", "a"), ("demo", "b"), ("demo", "c")]
    assert marker == ("demo", "not-due")


async def test_a_callback_that_changes_a_job_is_notified_at_commit_and_a_redelivery_is_not(
    two_stores: tuple[Store, Store], postgres_database: str
) -> None:
    """A job's first callback and a later change are announced once each, at commit; a redelivery and a
    callback that changes nothing are not."""
    first, second = two_stores
    heard: asyncio.Queue[tuple[str, str]] = asyncio.Queue()
    listening = await asyncpg.connect(postgres_database)
    try:
        await listening.add_listener(
            JOBS_CHANNEL, lambda *args: heard.put_nowait(tuple(orjson.loads(args[3])))
        )
        await first.ingest("demo", callback("j", Status.RUNNING, "d1"), T0, TIMEOUT)  # new job
        await second.ingest("demo", callback("j", Status.RUNNING, "d1"), T0 + 1, TIMEOUT)  # redelivery
        await second.ingest("demo", callback("j", Status.RUNNING, "d2"), T0 + 2, TIMEOUT)  # no change
        await second.ingest("demo", callback("j", Status.SUCCEEDED, "d3"), T0 + 3, TIMEOUT)  # a change
        got = [await asyncio.wait_for(heard.get(), 5) for _ in range(2)]
        # A marker sent after those commits arrives after everything they sent: nothing else was.
        await first.ingest("demo", callback("marker", Status.RUNNING, "m"), T0 + 4, TIMEOUT)
        marker = await asyncio.wait_for(heard.get(), 5)
    finally:
        await listening.close()
    assert got == [("demo", "j"), ("demo", "j")]
    assert marker == ("demo", "marker")


async def test_the_sweeper_reads_only_open_jobs_through_their_partial_indexes(postgres_database: str) -> None:
    """With many finished jobs and a tenth open, the overdue and early-reconcile queries (their generic plans,
    which prepared statements settle on) read the partial indexes of open jobs: a sweep costs what is due."""
    from relay.store.postgres.store import _OVERDUE_SQL, _RECONCILE_DUE_SQL

    conn = await asyncpg.connect(postgres_database)
    try:
        await conn.execute(
            "INSERT INTO jobs (source, job_id, status, created_at, updated_at, finished_at, deadline,"
            " reconcile_at) SELECT 'demo', 'j' || n,"
            " CASE WHEN n % 10 = 0 THEN 'running' ELSE 'succeeded' END, 0, 0,"
            " CASE WHEN n % 10 = 0 THEN NULL ELSE 1 END, n, CASE WHEN n % 20 = 0 THEN n END"
            " FROM generate_series(1, 50000) AS n"
        )
        await conn.execute("ANALYZE jobs")
        await conn.execute("SET plan_cache_mode = force_generic_plan")
        plans = []
        for sql in (_OVERDUE_SQL, _RECONCILE_DUE_SQL):
            explain = await conn.prepare(f"EXPLAIN (FORMAT JSON) {sql}")
            plans.append(await explain.fetchval(T0, 500))
    finally:
        await conn.close()
    assert '"Index Name": "jobs_open_deadline"' in plans[0]
    assert '"Index Name": "jobs_open_reconcile"' in plans[1]
    assert not any("Seq Scan" in plan or '"Sort"' in plan for plan in plans)
