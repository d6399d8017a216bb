"""The public job object and timestamps."""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from relay.models import FINAL_STATUSES, CallbackRecord, Event, Job, Status, iso

P, R, S, F, C, T = (
    Status.PENDING,
    Status.RUNNING,
    Status.SUCCEEDED,
    Status.FAILED,
    Status.CANCELED,
    Status.TIMED_OUT,
)

JOB_KEYS = {
    "files",
    "source",
    "job_id",
    "status",
    "result",
    "error",
    "late",
    "metadata",
    "created_at",
    "updated_at",
    "finished_at",
    "deadline",
    "callbacks",
    "progress",
}


def test_final_statuses() -> None:
    """Succeeded, failed, canceled and timed_out are final; pending and running are not."""
    assert {s for s in Status if s.final} == FINAL_STATUSES == {S, F, C, T}


def make_job(**changes: object) -> Job:
    fields: dict[str, object] = {
        "source": "replicate",
        "job_id": "abc",
        "status": Status.SUCCEEDED,
        "result": {"output": [1, 2]},
        "error": None,
        "late": False,
        "metadata": {"user": "u1"},
        "created_at": 1_700_000_000.0,
        "updated_at": 1_700_000_001.5,
        "finished_at": 1_700_000_001.5,
        "deadline": None,
        "callbacks": 3,
        "row_id": 42,
        "subscribers": ("https://example.com/hook",),
    }
    fields.update(changes)
    return Job(**fields)  # type: ignore[arg-type]


def test_job_to_public_has_exactly_the_contract_keys() -> None:
    """The public job object has exactly API.md's keys, no internals (row id, subscribers)."""
    public = make_job().to_public()
    assert set(public) == JOB_KEYS
    assert public == {
        "source": "replicate",
        "job_id": "abc",
        "status": "succeeded",
        "result": {"output": [1, 2]},
        "error": None,
        "late": False,
        "metadata": {"user": "u1"},
        "created_at": "2023-11-14T22:13:20.000Z",
        "updated_at": "2023-11-14T22:13:21.500Z",
        "finished_at": "2023-11-14T22:13:21.500Z",
        "deadline": None,
        "callbacks": 3,
        "progress": None,
        "files": [],
    }
    assert type(public["status"]) is str


def test_job_final_follows_its_status() -> None:
    """`Job.final` is true for final statuses only."""
    assert make_job(status=T).final
    assert not make_job(status=R).final


def test_event_to_public_and_type() -> None:
    """An event body is `{id, type, timestamp, data}` with the `job.<status>` type."""
    data = make_job().to_public()
    event = Event(7, "evt_1", "replicate", "abc", Event.type_for(S), 0.0, data)
    assert event.type == "job.succeeded"
    assert event.to_public() == {
        "id": "evt_1",
        "type": "job.succeeded",
        "timestamp": "1970-01-01T00:00:00.000Z",
        "data": data,
    }


ISO_UTC = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$")


@pytest.mark.parametrize(
    ("ts", "expected"),
    [
        (0.0, "1970-01-01T00:00:00.000Z"),
        (1_795_885_200.0, "2026-11-28T17:00:00.000Z"),
        (1_795_885_200.25, "2026-11-28T17:00:00.250Z"),
    ],
)
def test_iso_is_utc_with_a_trailing_z(ts: float, expected: str) -> None:
    """`iso` renders unix seconds as RFC 3339 UTC, milliseconds, trailing Z."""
    assert iso(ts) == expected


def test_iso_of_none_is_none() -> None:
    """An absent time stays null in the job object."""
    assert iso(None) is None


@settings(max_examples=200, deadline=None)
@given(st.floats(min_value=0, max_value=4_102_444_800, allow_nan=False))
def test_iso_round_trips_to_the_millisecond(ts: float) -> None:
    """Parsing `iso(ts)` gives back `ts` to the millisecond, in UTC."""
    text = iso(ts)
    assert text is not None and ISO_UTC.match(text)
    parsed = datetime.fromisoformat(text)
    assert parsed.tzinfo is not None and parsed.utcoffset() == UTC.utcoffset(None)
    assert abs(parsed.timestamp() - ts) < 0.001


@settings(max_examples=500, deadline=None)
@given(st.floats(min_value=-1e10, max_value=3e11, allow_nan=False))
@example(1.9999995).via("rounds up into the next second")
@example(1_795_885_200.0015).via("a millisecond boundary")
@example(253_402_300_799.9999).via("the last second of year 9999")
@example(-0.5).via("before 1970")
@example(1e308).via("a deadline stored before timeouts were bounded")
@example(math.nan).via("not a time at all")
@example(math.inf).via("nor is this")
def test_iso_is_what_datetime_gives(ts: float) -> None:
    """The fast path agrees with `datetime` exactly, rounding of microseconds and far dates included; a time
    no datetime can hold is None (no time), never an error that would fail every read of its job."""
    try:
        expected = datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    except (ValueError, OverflowError, OSError):
        assert iso(ts) is None
        return
    assert iso(ts) == expected
    assert iso(ts) == expected  # again, from the cached second


def test_callback_record_to_public() -> None:
    """A history entry shows its delivery id, receive time, status and channel."""
    record = CallbackRecord("msg_1", 0.5, Status.RUNNING, "webhook")
    assert record.to_public() == {
        "delivery_id": "msg_1",
        "received_at": "1970-01-01T00:00:00.500Z",
        "status": "running",
        "via": "webhook",
    }
