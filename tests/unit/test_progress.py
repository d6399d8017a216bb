"""Progress without a database: which callbacks are news, what they do to the job, which events they make,
who receives them, and how a burst is coalesced."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from relay.domain.jobs import apply_callback, new_job_from_callback, time_out
from relay.domain.outbox import recipient, targets_for
from relay.domain.progress import coalesced, coalesces, new_progress, progress_of, same_payload
from relay.models import Callback, Event, Status
from relay.outbox_models import EVENT_TYPES, FINAL_EVENT_TYPES

T0 = 1_700_000_000.0
TIMEOUT_S = 600.0
URL = "https://a.example.com/hook"


def callback(status: Status, result: Any = None, delivery: str = "d") -> Callback:
    return Callback("j", status, delivery, b"{}", result=result)


def running(progress: Any = None) -> Any:
    """A job heard of through a running callback carrying `progress`."""
    return new_job_from_callback("demo", callback(Status.RUNNING, progress, "d0"), T0, TIMEOUT_S)


def event(row: int, kind: str) -> Event:
    return Event(row, f"evt_{row}", "demo", "j", kind, T0 + row, {})


# --- what is news ------------------------------------------------------------------------------------------


def test_a_non_final_callback_carries_its_result_part_as_progress() -> None:
    """The payload is the part the kind reads as the result; a final callback carries none."""
    assert progress_of(callback(Status.RUNNING, {"logs": "step 1"})) == {"logs": "step 1"}
    assert progress_of(callback(Status.RUNNING)) is None
    assert progress_of(callback(Status.SUCCEEDED, {"output": 1})) is None


@pytest.mark.parametrize(
    ("a", "b", "same"),
    [
        ({"a": 1, "b": [1, 2]}, {"b": [1, 2], "a": 1}, True),  # key order does not count
        ({"p": 1}, {"p": 1.0}, False),  # what a subscriber reads differs
        ({"p": 1}, {"p": True}, False),
        ([1, 2], [2, 1], False),
        ("", None, False),
        (None, None, True),
        ({}, {}, True),
    ],
)
def test_payloads_are_compared_as_json(a: Any, b: Any, same: bool) -> None:
    """Two payloads are the same when their JSON is, whatever the order of their keys."""
    assert same_payload(a, b) is same
    assert same_payload(b, a) is same


def test_only_a_changed_payload_to_an_open_job_is_news() -> None:
    """A payload equal to the kept one, none at all, or one reaching a final job brings nothing."""
    job = running({"progress": 0.1})
    assert new_progress(job, callback(Status.RUNNING, {"progress": 0.5})) == {"progress": 0.5}
    assert new_progress(job, callback(Status.RUNNING, {"progress": 0.1})) is None
    assert new_progress(job, callback(Status.RUNNING)) is None
    finished = replace(job, status=Status.SUCCEEDED)
    assert new_progress(finished, callback(Status.RUNNING, {"progress": 0.9})) is None


# --- what it does to the job --------------------------------------------------------------------------------


def test_the_first_word_keeps_its_payload_and_is_job_running() -> None:
    """A job's first non-final callback is `job.running`, its payload already on the job."""
    assert running({"queue_position": 3}).progress == {"queue_position": 3}
    pending = replace(running(), status=Status.PENDING, callbacks=0)
    change = apply_callback(pending, callback(Status.RUNNING, {"queue_position": 2}), T0 + 1, TIMEOUT_S)
    assert (change.event_type, change.job.progress) == ("job.running", {"queue_position": 2})


def test_a_new_payload_is_a_progress_event_with_the_latest_payload() -> None:
    """A running job taking a new payload keeps it, is updated now, counts the callback; no status moves."""
    job = running({"progress": 0.1})
    change = apply_callback(job, callback(Status.RUNNING, {"progress": 0.5}, "d1"), T0 + 5, TIMEOUT_S)
    assert change.job == replace(job, progress={"progress": 0.5}, updated_at=T0 + 5, callbacks=2)
    assert (change.event_type, change.changed, change.duplicate) == ("job.progress", True, False)
    assert change.outcome(1).changed


def test_the_same_payload_again_makes_no_event() -> None:
    """A repeated payload (another delivery ID, keys in another order) only counts."""
    job = running({"a": 1, "b": 2})
    change = apply_callback(job, callback(Status.RUNNING, {"b": 2, "a": 1}, "d1"), T0 + 5, TIMEOUT_S)
    assert change.job == replace(job, callbacks=2)
    assert (change.event_type, change.changed, change.duplicate) == (None, False, False)


def test_the_final_event_keeps_the_last_progress_beside_the_result() -> None:
    """A final callback sets `result`; the last non-final payload stays as `progress`; time-outs keep it."""
    job = running({"progress": 0.9})
    done = apply_callback(job, callback(Status.SUCCEEDED, {"output": "x"}, "d1"), T0 + 5, TIMEOUT_S)
    assert (done.job.result, done.job.progress, done.event_type) == (
        {"output": "x"},
        {"progress": 0.9},
        "job.succeeded",
    )
    timed_out = time_out(job, T0 + TIMEOUT_S)
    assert timed_out is not None and timed_out.job.progress == {"progress": 0.9}


def test_a_payload_after_the_end_changes_nothing() -> None:
    """A non-final payload reaching a final job is a duplicate: no progress, no event."""
    job = replace(running({"progress": 0.9}), status=Status.FAILED)
    change = apply_callback(job, callback(Status.RUNNING, {"progress": 1.0}, "d1"), T0 + 5, TIMEOUT_S)
    assert (change.job.progress, change.event_type, change.duplicate) == ({"progress": 0.9}, None, True)


# --- who receives it ----------------------------------------------------------------------------------------


def test_progress_goes_only_to_subscriptions_that_name_it() -> None:
    """A subscription naming no events gets final events only; a job's own subscribers never get progress."""
    job = replace(running(), subscribers=(URL,))
    everyone = [
        recipient("sub_all", URL, None, None),
        recipient("sub_progress", URL, None, ["job.progress"]),
        recipient("sub_running", URL, "demo", ["job.running"]),
    ]
    assert [t[0] for t in targets_for("job.progress", job, everyone)] == ["sub_progress"]
    assert "job.progress" in EVENT_TYPES and "job.progress" not in FINAL_EVENT_TYPES


def test_only_progress_deliveries_coalesce() -> None:
    """A new progress event takes over an unsent older one; status events never do."""
    assert coalesces("job.progress")
    assert not any(coalesces(kind) for kind in EVENT_TYPES - {"job.progress"})


# --- a burst on the stream ----------------------------------------------------------------------------------


def test_a_run_of_progress_read_at_once_is_sent_as_its_newest() -> None:
    """Consecutive progress events collapse to the last; the others and the order stay."""
    events = [
        event(1, "job.running"),
        event(2, "job.progress"),
        event(3, "job.progress"),
        event(4, "job.progress"),
        event(5, "job.succeeded"),
    ]
    assert [e.id for e in coalesced(events)] == [1, 4, 5]
    assert [e.id for e in coalesced(events[:3])] == [1, 3]  # a run at the end: its newest is sent
    assert coalesced([]) == []
    assert coalesced([event(7, "job.progress")]) == [event(7, "job.progress")]
