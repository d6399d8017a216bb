"""The store's domain operations: dedupe, the job state machine, registration, listing."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson

from relay.file_models import ArchivedFile, FileStatus
from relay.models import Callback, Registration, Status
from relay.store import Store

T0 = 1_800_000_000.0
TIMEOUT = 900.0


def callback(
    job_id: str, status: Status, delivery_id: str, result: Any = None, error: str | None = None
) -> Callback:
    body = orjson.dumps({"id": job_id, "status": status.value, "result": result})
    return Callback(
        job_id=job_id, status=status, delivery_id=delivery_id, body=body, result=result, error=error
    )


async def test_first_callback_creates_the_job(store: Store) -> None:
    """A callback for an unregistered job creates it, with a deadline from the source timeout."""
    outcome = await store.ingest("demo", callback("j", Status.RUNNING, "d1"), T0, TIMEOUT)
    assert not outcome.duplicate and outcome.changed
    job = await store.get_job("demo", "j")
    assert job is not None
    assert (job.status, job.callbacks, job.deadline, job.created_at) == (Status.RUNNING, 1, T0 + TIMEOUT, T0)
    assert job.result is None and job.finished_at is None


async def test_a_read_cancelled_midway_hides_no_later_write(store: Store) -> None:
    """A read whose caller is cancelled while the database runs it (a client hanging up on a stream) leaves
    no snapshot behind: the next read sees what was committed since."""
    await store.ingest("demo", callback("before", Status.RUNNING, "d1"), T0, TIMEOUT)
    for attempt in range(5):  # a cancel lands at another point of the read each time
        reading = asyncio.create_task(store.get_job("demo", "before"))
        for _ in range(attempt):
            await asyncio.sleep(0)  # one turn of the loop per attempt: not a wait for any state
        reading.cancel()
        await asyncio.gather(reading, return_exceptions=True)
        await store.ingest("demo", callback(f"after{attempt}", Status.RUNNING, "d1"), T0, TIMEOUT)
        assert await store.get_job("demo", f"after{attempt}") is not None, attempt


async def test_redelivery_is_a_duplicate_and_changes_nothing(store: Store) -> None:
    """The same delivery ID twice: the second is a duplicate and the job is untouched."""
    await store.ingest("demo", callback("j", Status.SUCCEEDED, "d1", {"v": 1}), T0, TIMEOUT)
    again = await store.ingest("demo", callback("j", Status.SUCCEEDED, "d1", {"v": 1}), T0 + 5, TIMEOUT)
    assert again.duplicate and not again.changed
    job = await store.get_job("demo", "j")
    assert job is not None and job.callbacks == 1 and job.updated_at == T0
    assert len(await store.list_callbacks("demo", "j")) == 1


async def test_delivery_ids_are_scoped_by_source(store: Store) -> None:
    """One delivery ID used by two sources is two callbacks."""
    a = await store.ingest("demo", callback("j", Status.RUNNING, "same"), T0, TIMEOUT)
    b = await store.ingest("replicate", callback("j", Status.RUNNING, "same"), T0, TIMEOUT)
    assert not a.duplicate and not b.duplicate


async def test_delivery_ids_are_scoped_by_job(store: Store) -> None:
    """A redelivery is the same delivery ID for the same job; the ID on another job's callback is new."""
    a = await store.ingest("demo", callback("j1", Status.SUCCEEDED, "same"), T0, TIMEOUT)
    b = await store.ingest("demo", callback("j2", Status.SUCCEEDED, "same"), T0, TIMEOUT)
    assert not a.duplicate and not b.duplicate
    assert [
        job.status for job in await store.list_jobs(source="demo", status=None, limit=5, before=None)
    ] == [
        Status.SUCCEEDED,
        Status.SUCCEEDED,
    ]


async def test_final_state_is_set_once(store: Store) -> None:
    """A later final callback with a new delivery ID is a duplicate, kept only in the history."""
    await store.ingest("demo", callback("j", Status.SUCCEEDED, "d1", {"v": 1}), T0, TIMEOUT)
    later = await store.ingest("demo", callback("j", Status.FAILED, "d2", {"v": 2}, "boom"), T0 + 1, TIMEOUT)
    assert later.duplicate and not later.changed
    job = await store.get_job("demo", "j")
    assert job is not None
    assert (job.status, job.result, job.error, job.finished_at) == (Status.SUCCEEDED, {"v": 1}, None, T0)
    history = await store.list_callbacks("demo", "j")
    assert [(h.delivery_id, h.status) for h in history] == [
        ("d1", Status.SUCCEEDED),
        ("d2", Status.FAILED),
    ]


async def test_non_final_never_moves_a_final_job_back(store: Store) -> None:
    """A running callback after the result leaves the job final."""
    await store.ingest("demo", callback("j", Status.FAILED, "d1", None, "bad"), T0, TIMEOUT)
    late = await store.ingest("demo", callback("j", Status.RUNNING, "d2"), T0 + 1, TIMEOUT)
    assert late.duplicate and not late.changed
    job = await store.get_job("demo", "j")
    assert job is not None and job.status == Status.FAILED and job.error == "bad" and job.callbacks == 2


async def test_final_result_is_stored_with_its_error(store: Store) -> None:
    """The final callback's result and error land on the job with finished_at."""
    await store.ingest("demo", callback("j", Status.RUNNING, "d1"), T0, TIMEOUT)
    outcome = await store.ingest(
        "demo", callback("j", Status.FAILED, "d2", {"x": [1]}, "oom"), T0 + 3, TIMEOUT
    )
    assert outcome.changed and not outcome.duplicate
    assert (outcome.job.status, outcome.job.result, outcome.job.error) == (Status.FAILED, {"x": [1]}, "oom")
    assert outcome.job.finished_at == T0 + 3 and outcome.job.callbacks == 2


async def test_concurrent_copies_make_one_final_transition(store: Store) -> None:
    """64 concurrent copies of one final callback: one transition, 63 duplicates."""
    cb = callback("j", Status.SUCCEEDED, "d1", {"v": 1})
    outcomes = await asyncio.gather(*(store.ingest("demo", cb, T0, TIMEOUT) for _ in range(64)))
    assert sum(o.changed for o in outcomes) == 1
    assert sum(o.duplicate for o in outcomes) == 63
    job = await store.get_job("demo", "j")
    assert job is not None and job.callbacks == 1


async def test_concurrent_distinct_finals_make_one_final_transition(store: Store) -> None:
    """64 concurrent final callbacks with distinct delivery IDs: exactly one sets the state."""
    outcomes = await asyncio.gather(
        *(
            store.ingest(
                "demo",
                callback("j", Status.SUCCEEDED if i % 2 else Status.FAILED, f"d{i}", {"i": i}),
                T0,
                TIMEOUT,
            )
            for i in range(64)
        )
    )
    winners = [o for o in outcomes if o.changed]
    assert len(winners) == 1 and sum(o.duplicate for o in outcomes) == 63
    job = await store.get_job("demo", "j")
    assert job is not None and job.callbacks == 64 and job.result == winners[0].job.result


async def test_registration_creates_a_pending_job(store: Store) -> None:
    """Registering answers created=True and a pending job with the registration's own timeout."""
    job, created = await store.register(
        Registration("demo", "j", 60.0, ("https://a.example",), {"k": 1}), T0, TIMEOUT
    )
    assert created
    assert (job.status, job.deadline, job.metadata, job.subscribers) == (
        Status.PENDING,
        T0 + 60,
        {"k": 1},
        ("https://a.example",),
    )


async def test_registration_after_callback_merges(store: Store) -> None:
    """A registration after the final callback keeps the result and merges metadata."""
    await store.ingest("demo", callback("j", Status.SUCCEEDED, "d1", {"v": 1}), T0, TIMEOUT)
    job, created = await store.register(Registration("demo", "j", None, (), {"user": "u1"}), T0 + 1, TIMEOUT)
    assert not created
    assert (job.status, job.result, job.metadata, job.callbacks) == (
        Status.SUCCEEDED,
        {"v": 1},
        {"user": "u1"},
        1,
    )
    again, created = await store.register(
        Registration("demo", "j", None, ("https://b.example",), {"x": 2}), T0 + 2, TIMEOUT
    )
    assert (
        not created
        and again.metadata == {"user": "u1", "x": 2}
        and again.subscribers == ("https://b.example",)
    )


async def test_first_callback_rearms_a_registration_without_timeout(store: Store) -> None:
    """A job registered without its own timeout is due the source timeout from its first callback."""
    await store.register(Registration("demo", "j"), T0, TIMEOUT)
    await store.ingest("demo", callback("j", Status.RUNNING, "d1"), T0 + 100, TIMEOUT)
    job = await store.get_job("demo", "j")
    assert job is not None and job.deadline == T0 + 100 + TIMEOUT
    await store.register(Registration("demo", "k", 30.0), T0, TIMEOUT)
    await store.ingest("demo", callback("k", Status.RUNNING, "d2"), T0 + 10, TIMEOUT)
    job = await store.get_job("demo", "k")
    assert job is not None and job.deadline == T0 + 30


async def test_list_jobs_pages_newest_first_with_filters(store: Store) -> None:
    """Listing pages through every job exactly once, newest first, filtered by source and status."""
    for i in range(7):
        status = Status.SUCCEEDED if i % 2 else Status.RUNNING
        await store.ingest(
            "demo" if i < 5 else "replicate", callback(f"j{i}", status, f"d{i}"), T0 + i, TIMEOUT
        )
    seen, before = [], None
    while True:
        page = await store.list_jobs(source=None, status=None, limit=3, before=before)
        seen += [j.job_id for j in page]
        if len(page) < 3:
            break
        before = page[-1].row_id
    assert seen == [f"j{i}" for i in reversed(range(7))]
    demo_done = await store.list_jobs(source="demo", status=Status.SUCCEEDED, limit=10, before=None)
    assert [j.job_id for j in demo_done] == ["j3", "j1"]
    assert await store.count_jobs_by_status() == {"running": 4, "succeeded": 3}


async def test_unknown_job_is_none(store: Store) -> None:
    """Reading a job nobody heard of answers None, and ping works on an empty store."""
    assert await store.get_job("demo", "nope") is None
    await store.ping()


async def test_each_status_change_is_one_event(store: Store) -> None:
    """Events follow status changes in order; duplicates and no-ops emit nothing."""
    await store.register(Registration("demo", "j"), T0, TIMEOUT)
    await store.ingest("demo", callback("j", Status.RUNNING, "d1"), T0 + 1, TIMEOUT)
    await store.ingest("demo", callback("j", Status.RUNNING, "d2"), T0 + 2, TIMEOUT)
    await store.ingest("demo", callback("j", Status.SUCCEEDED, "d3", {"v": 1}), T0 + 3, TIMEOUT)
    await store.ingest("demo", callback("j", Status.SUCCEEDED, "d3", {"v": 1}), T0 + 4, TIMEOUT)
    await store.ingest("demo", callback("j", Status.FAILED, "d4"), T0 + 5, TIMEOUT)
    events = await store.list_events("demo", "j")
    assert [e.type for e in events] == ["job.running", "job.succeeded"]
    assert events[1].data["result"] == {"v": 1} and events[1].created_at == T0 + 3
    assert events[1].to_public()["id"].startswith("evt_") and events[0].id < events[1].id
    assert await store.list_events("demo", "j", after=events[0].id) == [events[1]]


async def test_list_jobs_gives_each_final_job_its_own_files(store: Store) -> None:
    """A page of jobs carries each final job's archived files, in document order, and none to the others."""

    def files(job_id: str, n: int) -> tuple[ArchivedFile, ...]:
        return tuple(
            ArchivedFile(
                f"fil_{job_id}_{i}", f"/r/{i}", f"https://cdn/{job_id}/{i}", f"u/{i}", FileStatus.PENDING
            )
            for i in range(n)
        )

    wanted = {"a": files("a", 2), "b": (), "c": files("c", 3)}
    for i, (job_id, found) in enumerate(wanted.items()):
        done = callback(job_id, Status.SUCCEEDED, f"d{job_id}", result={"n": i})
        await store.ingest("demo", done, T0 + i, TIMEOUT, files=found)
    await store.ingest(
        "demo", callback("open", Status.RUNNING, "dopen"), T0 + 9, TIMEOUT, files=files("o", 1)
    )
    page = await store.list_jobs(source="demo", status=None, limit=10, before=None)
    assert {job.job_id: tuple(f.id for f in job.files) for job in page} == {
        "open": (),
        **{job_id: tuple(f.id for f in found) for job_id, found in wanted.items()},
    }
