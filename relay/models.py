"""Domain types: jobs, callbacks and the job state machine. No I/O here."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

__all__ = [
    "FINAL_STATUSES",
    "Callback",
    "CallbackRecord",
    "Event",
    "IngestOutcome",
    "Job",
    "Registration",
    "Status",
    "Transition",
    "iso",
    "transition",
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


@dataclass(frozen=True, slots=True)
class Callback:
    """One verified, normalised callback from a provider."""

    job_id: str
    status: Status
    delivery_id: str
    body: bytes
    result: Any = None
    error: str | None = None
    via: str = "webhook"


@dataclass(frozen=True, slots=True)
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


@dataclass(frozen=True, slots=True)
class Registration:
    """A client's `POST /v1/jobs`."""

    source: str
    job_id: str
    timeout_s: float | None = None
    subscribers: tuple[str, ...] = ()
    metadata: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
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

    @property
    def final(self) -> bool:
        return self.status in FINAL_STATUSES

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
        }


@dataclass(frozen=True, slots=True)
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


@dataclass(frozen=True, slots=True)
class IngestOutcome:
    job: Job
    duplicate: bool
    changed: bool


@dataclass(frozen=True, slots=True)
class Transition:
    """What a callback does to a job: the new status (None: unchanged) and whether it arrived late."""

    status: Status | None
    late: bool = False

    @property
    def changed(self) -> bool:
        return self.status is not None


def transition(current: Status | None, incoming: Status) -> Transition:
    """Apply a callback's status to a job's: final states are set once, never moved back.

    A final status after `timed_out` is taken as late; everything else reaching a final job is a no-op.
    """
    if current is None or current in (Status.PENDING, Status.RUNNING):
        if incoming.final:
            return Transition(incoming)
        # Non-final words (queued, starting, processing...) all mean "we heard from the provider".
        return Transition(Status.RUNNING if current != Status.RUNNING else None)
    if current == Status.TIMED_OUT and incoming.final and incoming != Status.TIMED_OUT:
        return Transition(incoming, late=True)
    return Transition(None)


def iso(ts: float | None) -> str | None:
    """Unix seconds as RFC 3339 UTC with millisecond precision."""
    if ts is None:
        return None
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
