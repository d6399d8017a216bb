"""The batched time-out on every backend: each job ends as the single `time_out` ends it, every read path
shows it the same way, and jobs a callback ended (or that are not due) are left alone."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import orjson

from relay.models import IngestOutcome, Job, Registration, Status
from relay.store import Store
from tests.store.test_deliveries_store import SECRET, URL_A, URL_B, callback, claim

T0 = 1_800_000_000.0
TIMEOUT = 900.0
LATER = T0 + 20  # past the 10 s deadline of every job `overdue` makes


async def overdue(store: Store, job_id: str) -> None:
    """A running job with metadata, a per-job subscriber and a 10 s deadline."""
    await store.register(Registration("demo", job_id, 10.0, (URL_B,), {"k": job_id}), T0, TIMEOUT)
    await store.ingest("demo", callback(job_id, Status.RUNNING), T0 + 1, TIMEOUT)


async def read(store: Store, *job_ids: str) -> list[Job]:
    """The jobs as the sweeper's overdue read gives them."""
    jobs = [await store.get_job("demo", job_id) for job_id in job_ids]
    assert all(job is not None for job in jobs)
    return [job for job in jobs if job is not None]


async def seen(store: Store, job_id: str) -> dict[str, Any]:
    """Everything the read paths show of a job, its own names taken out so that two jobs compare."""
    job = await store.get_job("demo", job_id)
    assert job is not None
    listed = await store.list_jobs(source="demo", status=Status.TIMED_OUT, limit=100, before=None)
    events = await store.list_events("demo", job_id)
    deliveries = await store.list_deliveries(job_id=job_id)
    return {
        "job": {**job.to_public(), "job_id": None, "metadata": None},
        "times": (job.updated_at, job.finished_at, job.deadline, job.callbacks, job.late),
        "listed": [j for j in listed if j.job_id == job_id] == [job],
        "history": [(h.status, h.via, h.received_at) for h in await store.list_callbacks("demo", job_id)],
        "events": [(e.type, e.created_at, {**e.data, "job_id": None, "metadata": None}) for e in events],
        "deliveries": sorted(
            (d.event_type, d.url, d.subscription_id is None, d.status.value, d.next_attempt_at)
            for d in deliveries
        ),
    }


def answer(outcome: IngestOutcome | None) -> tuple[bool, bool, int, str] | None:
    return (
        None if outcome is None else (outcome.changed, outcome.duplicate, outcome.queued, outcome.job.status)
    )


async def test_a_batch_ends_each_job_as_a_single_time_out_does(store: Store) -> None:
    """Jobs timed out together and one timed out alone: the same job, history entry, event and deliveries
    (to the source's subscription and the job's own subscriber), and the same answers."""
    await store.create_subscription(URL_A, "demo", None, SECRET, T0)
    for job_id in ("alone", "b1", "b2"):
        await overdue(store, job_id)
    single = await store.time_out("demo", "alone", LATER)
    batch = await store.time_out_many(await read(store, "b1", "b2"), LATER)
    assert [answer(o) for o in batch] == [answer(single)] * 2
    assert answer(single) == (True, False, 2, Status.TIMED_OUT)
    for outcome, job_id in zip(batch, ("b1", "b2"), strict=True):
        assert outcome is not None and outcome.job == await store.get_job("demo", job_id)
    expected = await seen(store, "alone")
    assert expected["history"][-1] == (Status.TIMED_OUT, "sweep", LATER) and expected["listed"]
    assert [e[0] for e in expected["events"]] == ["job.running", "job.timed_out"]
    assert await seen(store, "b1") == expected == await seen(store, "b2")
    assert await store.count_jobs_by_status() == {"timed_out": 3}
    # The deliveries go out with the events' bodies, as any other event's.
    bodies = {}
    for taken in await claim(store, LATER, limit=20):
        body = orjson.loads(taken.body)
        bodies[(body["data"]["job_id"], body["type"], taken.delivery.url)] = body
    for job_id in ("alone", "b1", "b2"):
        timed_out = (await store.list_events("demo", job_id))[-1]
        assert bodies[(job_id, "job.timed_out", URL_A)] == timed_out.to_public()
        assert bodies[(job_id, "job.timed_out", URL_B)] == timed_out.to_public()


async def test_jobs_that_are_not_due_are_left_alone_and_answered_none(store: Store) -> None:
    """Jobs read when overdue that a callback ended since, or whose deadline moved, one never due, one whose
    row now holds another job, and a job listed twice: None for each but the first listing of the one
    still due, and nothing about the others changes."""
    for job_id in ("due", "done", "extended", "reused"):
        await overdue(store, job_id)
    await store.register(Registration("demo", "later", 3600.0), T0, TIMEOUT)
    jobs = await read(store, "due", "done", "extended", "later")
    await store.ingest("demo", callback("done", Status.SUCCEEDED), LATER, TIMEOUT)
    assert await store.extend_deadline("demo", "extended", LATER + 60)
    others = ("done", "extended", "later", "reused")
    before = {job_id: await seen(store, job_id) for job_id in others}
    (reused,) = await read(store, "reused")
    purged = replace(reused, job_id="purged")  # read before its row went to another job
    outcomes = await store.time_out_many([*jobs, purged, jobs[0]], LATER)
    assert [answer(o) for o in outcomes] == [(True, False, 1, Status.TIMED_OUT), *[None] * 5]
    assert {job_id: await seen(store, job_id) for job_id in others} == before
    assert [h.via for h in await store.list_callbacks("demo", "due")] == ["webhook", "sweep"]
    assert await store.time_out_many(jobs[:1], LATER + 1) == [None]
    assert await store.time_out_many([], LATER) == []
