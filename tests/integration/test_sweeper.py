"""Deadlines and the sweeper, driven by `run_once(now)` with an explicit clock."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator

import asyncpg
import orjson
import pytest

from relay.sweeper import Sweeper
from tests.conftest import Clock, Relay, open_relay, wait_for
from tests.integration.conftest import SettingsWith

T0 = 1_900_000_000.0


@pytest.fixture
def clock() -> Clock:
    return Clock(T0)


@pytest.fixture
async def relay(settings_with: SettingsWith, clock: Clock) -> AsyncIterator[Relay]:
    """A relay on the test's clock with its loops stopped, and a 100 s source timeout."""
    settings = settings_with(
        sources={
            "demo": {
                "kind": "standard-webhooks",
                "secret": "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
                "timeout_s": 100,
            }
        },
    )
    async with open_relay(settings, clock=clock, background=False) as opened:
        yield opened


def sweeper(relay: Relay) -> Sweeper:
    return relay.services.loop(Sweeper)


async def callback(relay: Relay, clock: Clock, job_id: str, status: str) -> dict[str, object]:
    payload = orjson.dumps({"id": job_id, "status": status, "output": status})
    response = await relay.post_callback("demo", payload, timestamp=clock.now)
    assert response.status_code == 200, response.text
    return response.json()  # type: ignore[no-any-return]


async def job(relay: Relay, job_id: str) -> dict[str, object]:
    return (await relay.client.get(f"/v1/jobs/demo/{job_id}")).json()  # type: ignore[no-any-return]


async def test_registered_job_times_out_at_its_deadline(relay: Relay, clock: Clock) -> None:
    """A job registered with timeout_s is timed out by the first sweep after its deadline, not before."""
    await relay.client.post("/v1/jobs", json={"source": "demo", "job_id": "j1", "timeout_s": 60})
    assert await sweeper(relay).run_once(T0 + 59) == 0
    assert (await job(relay, "j1"))["status"] == "pending"
    assert await sweeper(relay).run_once(T0 + 61) == 1
    timed_out = await job(relay, "j1")
    assert timed_out["status"] == "timed_out" and timed_out["late"] is False
    history = (await relay.client.get("/v1/jobs/demo/j1/callbacks")).json()["callbacks"]
    assert [(h["status"], h["via"]) for h in history] == [("timed_out", "sweep")]
    events = await relay.services.store.list_events("demo", "j1")
    assert [e.type for e in events] == ["job.timed_out"]


async def test_silent_running_job_is_due_from_its_first_callback(relay: Relay, clock: Clock) -> None:
    """A job that reported running and went silent is due the source timeout from that callback."""
    await relay.client.post("/v1/jobs", json={"source": "demo", "job_id": "j1"})
    clock.advance(50)
    await callback(relay, clock, "j1", "processing")
    assert await sweeper(relay).run_once(T0 + 120) == 0  # registration + 100 passed, callback + 100 not
    assert await sweeper(relay).run_once(T0 + 151) == 1
    assert (await job(relay, "j1"))["status"] == "timed_out"


async def test_time_out_wakes_the_waiter(relay: Relay, clock: Clock) -> None:
    """A long-poll on a job is answered with timed_out by the sweep."""
    await relay.client.post("/v1/jobs", json={"source": "demo", "job_id": "j1", "timeout_s": 10})
    waiting = asyncio.create_task(relay.client.get("/v1/jobs/demo/j1", params={"wait": 60}))
    await wait_for(lambda: relay.services.hub.count == 1)
    await sweeper(relay).run_once(T0 + 11)
    answer = await asyncio.wait_for(waiting, 10)
    assert answer.json()["status"] == "timed_out"


async def test_late_final_callback_after_timeout(relay: Relay, clock: Clock) -> None:
    """A final callback after timed_out is taken with late: true and emitted after job.timed_out."""
    await relay.client.post("/v1/jobs", json={"source": "demo", "job_id": "j1", "timeout_s": 10})
    await sweeper(relay).run_once(T0 + 11)
    clock.advance(20)
    answer = await callback(relay, clock, "j1", "succeeded")
    assert answer["duplicate"] is False
    late = await job(relay, "j1")
    assert (late["status"], late["late"], late["result"]["output"]) == ("succeeded", True, "succeeded")  # type: ignore[index]
    events = await relay.services.store.list_events("demo", "j1")
    assert [e.type for e in events] == ["job.timed_out", "job.succeeded"]
    assert events[1].data["late"] is True
    again = await callback(relay, clock, "j1", "failed")
    assert again["duplicate"] is True


async def test_final_jobs_are_never_swept(relay: Relay, clock: Clock) -> None:
    """A job that finished in time is left alone by every later sweep."""
    await callback(relay, clock, "j1", "succeeded")
    assert await sweeper(relay).run_once(T0 + 10_000) == 0
    assert (await job(relay, "j1"))["status"] == "succeeded"


async def test_callback_racing_the_sweeper_ends_consistently(relay: Relay, clock: Clock) -> None:
    """Final callbacks racing sweeps: each job ends in one consistent state with one event per change."""
    ids = [f"r{i}" for i in range(40)]
    for job_id in ids:
        await relay.client.post("/v1/jobs", json={"source": "demo", "job_id": job_id, "timeout_s": 5})
    clock.advance(6)  # every job is overdue, and every callback is signed at that time
    await asyncio.gather(
        *(callback(relay, clock, job_id, "succeeded") for job_id in ids),
        *(sweeper(relay).run_once(clock.now) for _ in range(3)),
    )
    for job_id in ids:
        state = await job(relay, job_id)
        types = [e.type for e in await relay.services.store.list_events("demo", job_id)]
        if state["late"]:
            assert state["status"] == "succeeded" and types == ["job.timed_out", "job.succeeded"]
        else:
            assert state["status"] == "succeeded" and types == ["job.succeeded"]


async def test_jobs_overdue_while_down_are_swept_after_restart(settings_with: SettingsWith) -> None:
    """Deadlines survive a restart: a job that passed its deadline while relay was down is handled at once."""
    settings = settings_with()
    clock = Clock(T0)
    async with open_relay(settings, clock=clock, background=False) as relay:
        await relay.client.post("/v1/jobs", json={"source": "demo", "job_id": "j1", "timeout_s": 30})
    clock.advance(3600)
    async with open_relay(settings, clock=clock, background=False) as relay:
        assert await sweeper(relay).run_once(clock.now) == 1
        assert (await job(relay, "j1"))["status"] == "timed_out"


async def test_background_sweeper_times_out_within_an_interval(settings_with: SettingsWith) -> None:
    """With the loops running, an overdue job is timed out within one sweep interval of its deadline."""
    async with open_relay(settings_with(sweep_interval_s=0.05)) as relay:
        await relay.client.post("/v1/jobs", json={"source": "demo", "job_id": "j1", "timeout_s": 0.2})
        answer = await relay.client.get("/v1/jobs/demo/j1", params={"wait": 10})
        assert answer.json()["status"] == "timed_out"


@pytest.mark.sqlite_only("reads SQLite's query plan; the PostgreSQL one is checked below")
async def test_overdue_query_uses_the_open_deadline_index(relay: Relay) -> None:
    """The sweep reads only open jobs through their deadline index, so its cost follows the overdue count."""
    from relay.store.sqlite.sweeps import OVERDUE_SQL, RECONCILE_DUE_SQL

    path = relay.settings.database.removeprefix("sqlite:///")
    with sqlite3.connect(path) as conn:
        plans = [
            " ".join(str(row) for row in conn.execute(f"EXPLAIN QUERY PLAN {sql}", (T0, 10)))
            for sql in (OVERDUE_SQL, RECONCILE_DUE_SQL)
        ]
    assert "jobs_open_deadline" in plans[0] and "jobs_open_reconcile" in plans[1]
    assert not any("SCAN jobs" in plan or "TEMP B-TREE" in plan for plan in plans)


@pytest.mark.postgres
async def test_overdue_query_can_use_the_open_deadline_index_on_postgres(postgres_database: str) -> None:
    """On PostgreSQL the sweep's queries fit the partial indexes: with sequential scans priced out (a new
    table is too small for the planner to prefer an index), each is an index scan in deadline order."""
    from relay.store.postgres.store import _OVERDUE_SQL, _RECONCILE_DUE_SQL

    conn = await asyncpg.connect(postgres_database)
    try:
        await conn.execute("SET enable_seqscan = off")
        plans = [
            "\n".join(row[0] for row in await conn.fetch(f"EXPLAIN {sql}", T0, 10))
            for sql in (_OVERDUE_SQL, _RECONCILE_DUE_SQL)
        ]
    finally:
        await conn.close()
    assert "Index Scan using jobs_open_deadline on jobs" in plans[0], plans[0]
    assert "Index Scan using jobs_open_reconcile on jobs" in plans[1], plans[1]
    assert not any("Seq Scan" in plan or "Sort" in plan for plan in plans), plans


async def test_retention_purges_old_finished_jobs_only(relay: Relay, clock: Clock) -> None:
    """Jobs finished more than retention_days ago go with their history; others stay."""
    await callback(relay, clock, "old", "succeeded")
    await relay.client.post("/v1/jobs", json={"source": "demo", "job_id": "open", "timeout_s": 60 * 86_400})
    clock.advance(29 * 86_400)
    await callback(relay, clock, "recent", "failed")
    clock.advance(2 * 86_400)
    await sweeper(relay).run_once(clock.now)
    assert (await relay.client.get("/v1/jobs/demo/old")).status_code == 404
    assert await relay.services.store.list_callbacks("demo", "old") == []
    assert await relay.services.store.list_events("demo", "old") == []
    assert (await job(relay, "recent"))["status"] == "failed"
    assert (await job(relay, "open"))["status"] == "pending"


async def test_purge_works_in_bounded_batches(relay: Relay, clock: Clock) -> None:
    """One purge call deletes at most its batch size; repeated calls finish the rest."""
    for i in range(7):
        await callback(relay, clock, f"j{i}", "succeeded")
    store = relay.services.store
    assert await store.purge_finished(clock.now + 1, 3) == 3
    assert await store.purge_finished(clock.now + 1, 3) == 3
    assert await store.purge_finished(clock.now + 1, 3) == 1
    assert await store.count_jobs_by_status() == {}
