"""Progress in the store, on every backend: the payload kept on the job, the `job.progress` event written with
its history entry, and unsent progress deliveries taken over by the newest, never past the final event."""

from __future__ import annotations

from typing import Any

import orjson

from relay.models import Callback, Registration, Status
from relay.outbox_models import DeliveryStatus
from relay.store import Store
from tests.store.test_deliveries_store import SECRET, URL_A, URL_B, claim, finish

T0 = 1_800_000_000.0
TIMEOUT = 900.0


def update(n: int, status: Status = Status.RUNNING, job_id: str = "j") -> Callback:
    """The provider's n-th callback: a fresh delivery ID, `{"step": n}` as its payload (or its result)."""
    payload = {"step": n}
    body = orjson.dumps({"id": job_id, "status": status.value, **payload})
    return Callback(job_id, status, f"{job_id}-{n}", body, result=payload)


def progress_of(body: bytes) -> Any:
    return orjson.loads(body)["data"]["progress"]


async def test_a_changed_payload_is_a_progress_event_and_the_job_keeps_it(store: Store) -> None:
    """The first word is job.running; a new payload is job.progress; the same payload again is nothing."""
    first = await store.ingest("demo", update(1), T0, TIMEOUT)
    again = Callback("j", Status.RUNNING, "j-1-again", b"{}", result={"step": 1})
    repeated = await store.ingest("demo", again, T0 + 1, TIMEOUT)
    moved = await store.ingest("demo", update(2), T0 + 2, TIMEOUT)
    assert (first.changed, repeated.changed, repeated.duplicate, moved.changed) == (True, False, False, True)
    events = await store.list_events("demo", "j")
    assert [(e.type, e.data["progress"]) for e in events] == [
        ("job.running", {"step": 1}),
        ("job.progress", {"step": 2}),
    ]
    job = await store.get_job("demo", "j")
    assert job is not None and (job.progress, job.callbacks, job.updated_at) == ({"step": 2}, 3, T0 + 2)
    await store.register(Registration("demo", "j", metadata={"k": 1}), T0 + 3, TIMEOUT)
    job = await store.get_job("demo", "j")
    assert job is not None and (job.progress, job.metadata) == ({"step": 2}, {"k": 1})  # a merge keeps it
    assert [c.delivery_id for c in await store.list_callbacks("demo", "j")] == ["j-1", "j-1-again", "j-2"]


async def test_the_last_progress_stays_through_the_end(store: Store) -> None:
    """A result sets `result` beside the last progress; a time-out (one job or a round) keeps it too."""
    for job_id in ("done", "late", "batch"):
        await store.ingest("demo", update(7, job_id=job_id), T0, TIMEOUT)
    await store.ingest("demo", update(8, Status.SUCCEEDED, "done"), T0 + 1, TIMEOUT)
    assert await store.time_out("demo", "late", T0 + TIMEOUT) is not None
    (batch,) = await store.overdue_jobs(T0 + TIMEOUT, 10)
    await store.time_out_many([batch], T0 + TIMEOUT)
    for job_id, status in (("done", "succeeded"), ("late", "timed_out"), ("batch", "timed_out")):
        job = await store.get_job("demo", job_id)
        assert job is not None and (job.status, job.progress) == (status, {"step": 7}), job_id
    done = await store.get_job("demo", "done")
    assert done is not None and done.result == {"step": 8}


async def test_unsent_progress_is_taken_over_by_the_newest(store: Store) -> None:
    """A subscription naming job.progress has one delivery however many updates come before it is sent: the
    newest event's; one not naming it has none."""
    wants = await store.create_subscription(URL_A, None, ["job.progress"], SECRET, T0)
    await store.create_subscription(URL_B, None, None, SECRET, T0)
    queued = [(await store.ingest("demo", update(n), T0 + n, TIMEOUT)).queued for n in range(5)]
    assert queued == [0, 1, 1, 1, 1]  # the first word is job.running, which it did not name
    (delivery,) = await store.list_deliveries()
    events = await store.list_events("demo", "j")
    assert (delivery.subscription_id, delivery.event_id) == (wants.id, events[-1].event_id)
    (taken,) = await claim(store, T0 + 5)
    assert orjson.loads(taken.body)["type"] == "job.progress" and progress_of(taken.body) == {"step": 4}


async def test_a_progress_delivery_once_tried_keeps_its_event_and_its_place(store: Store) -> None:
    """An attempted delivery (in flight, then retrying) is never taken over; the updates behind it share one
    delivery, and the final event comes after both: progress never arrives after the result."""
    await store.create_subscription(URL_A, None, ["job.progress", "job.succeeded"], SECRET, T0)
    await store.ingest("demo", update(0), T0, TIMEOUT)
    await store.ingest("demo", update(1), T0 + 1, TIMEOUT)
    (in_flight,) = await claim(store, T0 + 1)
    for n in (2, 3):  # behind the one in flight
        await store.ingest("demo", update(n), T0 + n, TIMEOUT)
    assert await finish(store, in_flight, DeliveryStatus.RETRYING, T0 + 5)
    for n in (4, 5):
        await store.ingest("demo", update(n), T0 + n, TIMEOUT)
    await store.ingest("demo", update(6, Status.SUCCEEDED), T0 + 6, TIMEOUT)
    assert len(await store.list_deliveries()) == 3
    sent = []
    for _ in range(3):  # one at a time: each is held behind the one before it until that one settles
        (taken,) = await claim(store, T0 + 6)
        sent.append((orjson.loads(taken.body)["type"], orjson.loads(taken.body)["data"]))
        assert await finish(store, taken, DeliveryStatus.DELIVERED)
    assert [(kind, data["status"], data["progress"]) for kind, data in sent] == [
        ("job.progress", "running", {"step": 1}),
        ("job.progress", "running", {"step": 5}),
        ("job.succeeded", "succeeded", {"step": 5}),
    ]
    assert await claim(store, T0 + 7) == []
