"""Value types: jobs, callbacks and events (subscriptions and deliveries are in relay/outbox_models.py).
No I/O here; what happens to a job is in relay/domain/jobs.py."""

from __future__ import annotations

import enum
import math
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, TypeVar, dataclass_transform

__all__ = [
    "FINAL_STATUSES",
    "MAX_TIMEOUT_S",
    "Callback",
    "CallbackRecord",
    "Event",
    "IngestOutcome",
    "Job",
    "Registration",
    "Status",
    "is_seconds",
    "iso",
    "record",
]


class Status(enum.StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELED = "canceled"
    TIMED_OUT = "timed_out"

    @property
    def final(self) -> bool:
        return self in FINAL_STATUSES


FINAL_STATUSES = frozenset({Status.SUCCEEDED, Status.FAILED, Status.CANCELED, Status.TIMED_OUT})

R = TypeVar("R")


@dataclass_transform(frozen_default=True, field_specifiers=(field,))
def record(cls: type[R]) -> type[R]:
    """A value type: a slotted dataclass, immutable as far as the type checker goes.

    Not frozen at run time: a frozen dataclass sets each field through `object.__setattr__`, which makes
    building one several times slower (2.0 against 0.2 µs for a Job), and a callback builds several. mypy
    (strict, in CI) refuses any assignment to a field, as it would for `frozen=True`.
    """
    return dataclass(slots=True, unsafe_hash=True)(cls)


@record
class Callback:
    """One verified, normalised callback from a provider."""

    job_id: str
    status: Status
    delivery_id: str
    body: bytes
    result: Any = None
    error: str | None = None
    via: str = "webhook"


@record
class CallbackRecord:
    """One entry of a job's history: a callback, a reconcile answer or a sweep."""

    delivery_id: str
    received_at: float
    status: Status
    via: str

    def to_public(self) -> dict[str, Any]:
        return {
            "delivery_id": self.delivery_id,
            "received_at": iso(self.received_at),
            "status": self.status.value,
            "via": self.via,
        }


# The longest a job may be given before it counts as overdue (a year: past any generation job); a bound keeps
# every deadline a time that the API can write out.
MAX_TIMEOUT_S = 366 * 86_400.0


def is_seconds(value: object, *, zero: bool = False) -> bool:
    """Whether `value` is a number of seconds above 0 (or from 0, with `zero`) and at most MAX_TIMEOUT_S;
    the bounds also refuse nan and inf, and a bool is not a number here."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    return (0 <= value if zero else 0 < value) and value <= MAX_TIMEOUT_S


@record
class Registration:
    """A client's `POST /v1/jobs`."""

    source: str
    job_id: str
    timeout_s: float | None = None
    subscribers: tuple[str, ...] = ()
    metadata: dict[str, Any] = field(default_factory=dict)


@record
class Job:
    """A job as stored; times are unix seconds."""

    source: str
    job_id: str
    status: Status
    result: Any
    error: str | None
    late: bool
    metadata: dict[str, Any]
    created_at: float
    updated_at: float
    finished_at: float | None
    deadline: float | None
    callbacks: int
    row_id: int = 0
    subscribers: tuple[str, ...] = ()
    timeout_s: float | None = None  # its own, from its registration; None: its source's
    progress: Any = None  # the latest non-final callback's payload (relay/domain/progress.py)
    files: tuple[Any, ...] = ()  # its result's archived files (relay/file_models.py ArchivedFile)

    @property
    def final(self) -> bool:
        return self.status in FINAL_STATUSES

    @property
    def archiving(self) -> bool:
        """Whether some of its files are still to be archived (its `job.archived` event is to come)."""
        return any(file.status in ("pending", "fetching") for file in self.files)

    def to_public(self) -> dict[str, Any]:
        """The job object of the public contract."""
        return {
            "source": self.source,
            "job_id": self.job_id,
            "status": self.status.value,
            "result": self.result,
            "error": self.error,
            "late": self.late,
            "metadata": self.metadata,
            "created_at": iso(self.created_at),
            "updated_at": iso(self.updated_at),
            "finished_at": iso(self.finished_at),
            "deadline": iso(self.deadline),
            "callbacks": self.callbacks,
            "progress": self.progress,
            "files": [file.to_public() for file in self.files],
        }


@record
class Event:
    """One status change of a job; `id` orders a job's events, `event_id` is its webhook-id."""

    id: int
    event_id: str
    source: str
    job_id: str
    type: str
    created_at: float
    data: dict[str, Any]

    @staticmethod
    def type_for(status: Status) -> str:
        return f"job.{status.value}"

    def to_public(self) -> dict[str, Any]:
        """The event body of a delivery and of an SSE message."""
        return {"id": self.event_id, "type": self.type, "timestamp": iso(self.created_at), "data": self.data}


@record
class IngestOutcome:
    job: Job
    duplicate: bool
    changed: bool
    queued: int = 0  # deliveries the change queued for subscribers


def iso(ts: float | None) -> str | None:
    """Unix seconds as RFC 3339 UTC with millisecond precision (the milliseconds of `datetime`, truncated)."""
    global _last_iso
    if ts is None:
        return None
    last = _last_iso  # read once: another thread may replace it
    if ts == last[0]:  # a new job's created, updated and finished times are one instant
        return last[1]
    # What `datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds")` gives, without building a
    # datetime: every event formats four times, and most fall in a second formatted just before.
    if not 0 <= ts < _LAST_ISO_SECOND:  # before 1970, or past what a datetime holds (nan fails both)
        return _iso_outside_fast_range(ts)
    fraction, whole = math.modf(ts)
    micros, second = round(fraction * 1e6), int(whole)
    if micros >= 1_000_000:
        second, micros = second + 1, micros - 1_000_000
    text = _iso_seconds.get(second)
    if text is None:
        if len(_iso_seconds) >= 64:
            _iso_seconds.clear()
        text = _iso_seconds[second] = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
    formatted = f"{text}.{micros // 1000:03d}Z"
    _last_iso = (ts, formatted)  # one tuple, replaced whole: safe to share with the threads too
    return formatted


def _iso_outside_fast_range(ts: float) -> str | None:
    """`iso()` of a time before 1970, or None for one no datetime can hold (a stored deadline of 1e308
    reads as no deadline rather than failing every read of its job)."""
    try:
        return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    except (OverflowError, ValueError, OSError):
        return None


_LAST_ISO_SECOND = 253_402_300_799  # 9999-12-31T23:59:59Z
# Recently formatted seconds (a job's times are now and its deadline); dict operations are atomic, so the
# threads may share it.
_iso_seconds: dict[int, str] = {}
_last_iso: tuple[float, str] = (math.nan, "")  # nan equals nothing
