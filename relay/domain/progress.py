"""Progress: what a non-final callback's payload does to a job, and how a chatty provider's `job.progress`
events are coalesced on their way out (docs/decisions.md, "Progress"). No I/O; the backends run the SQL."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import orjson

from relay.models import Callback, Event, Job
from relay.outbox_models import PROGRESS_EVENT_TYPE

__all__ = [
    "PROGRESS_EVENT_TYPE",
    "coalesced",
    "coalesces",
    "new_progress",
    "progress_of",
    "same_payload",
]


def progress_of(callback: Callback) -> Any:
    """The payload a non-final callback carries: the part its kind reads as the result (Replicate's
    prediction, RunPod's `output`, a pointer kind's `result_pointer`); None for a final one or none at all."""
    return None if callback.status.final else callback.result


def same_payload(a: Any, b: Any) -> bool:
    """Whether two payloads are the same JSON: key order does not count; 1, 1.0 and true differ (as they do
    to a subscriber), which Python's `==` would not see."""
    if a is None or b is None:
        return a is b
    return orjson.dumps(a, option=orjson.OPT_SORT_KEYS) == orjson.dumps(b, option=orjson.OPT_SORT_KEYS)


def new_progress(job: Job, callback: Callback) -> Any:
    """The payload `callback` brings to `job` when it is news: a non-final callback to an open job whose
    payload differs from the latest one kept; None otherwise (nothing to keep, no `job.progress` event)."""
    payload = progress_of(callback)
    if payload is None or job.final or same_payload(payload, job.progress):
        return None
    return payload


def coalesced(events: Sequence[Event]) -> list[Event]:
    """What a stream sends of the events it read in one go: a run of consecutive `job.progress` events is
    sent as its newest (the latest payload wins; the ids stay in order, so `Last-Event-ID` still resumes)."""
    last = len(events) - 1
    return [
        event
        for i, event in enumerate(events)
        if not (event.type == PROGRESS_EVENT_TYPE and i < last and events[i + 1].type == PROGRESS_EVENT_TYPE)
    ]


def coalesces(event_type: str) -> bool:
    """Whether a new event of this type takes over its job's unsent deliveries of an older one to the same
    target instead of queueing one more (each backend's fan-out runs the SQL).

    Only `job.progress`, and only deliveries never attempted (pending, no attempt): one that may have reached
    its subscriber keeps its `webhook-id`. The delivery keeps its place in the job's order, which is before
    any final event (no progress is made once a job is final), so progress never arrives after the result.
    """
    return event_type == PROGRESS_EVENT_TYPE
