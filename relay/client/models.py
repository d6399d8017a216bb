"""What the client answers: jobs, stream events, subscriptions and deliveries, parsed from relay's JSON."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

__all__ = [
    "FINAL_STATUSES",
    "Delivery",
    "DeliveryAttempt",
    "Event",
    "File",
    "Job",
    "Subscription",
]

# A job in one of these never goes back to pending or running.
FINAL_STATUSES = frozenset({"succeeded", "failed", "canceled", "timed_out"})


def _time(value: Any) -> datetime | None:
    """An RFC 3339 time from relay (`...Z`) as an aware datetime; None stays None."""
    return None if value is None else datetime.fromisoformat(value)


def _required_time(value: Any) -> datetime:
    parsed = _time(value)
    if parsed is None:
        raise ValueError("a time relay always sets is missing")
    return parsed


@dataclass(frozen=True, slots=True)
class File:
    """A file of a job's result that relay archives (`archive = true` sources)."""

    id: str
    pointer: str
    source_url: str
    url: str
    status: str  # pending, archived or failed
    bytes: int | None
    sha256: str | None
    content_type: str | None
    error: str | None

    @classmethod
    def from_dict(cls, doc: dict[str, Any]) -> File:
        return cls(
            id=doc["id"],
            pointer=doc["pointer"],
            source_url=doc["source_url"],
            url=doc["url"],
            status=doc["status"],
            bytes=doc.get("bytes"),
            sha256=doc.get("sha256"),
            content_type=doc.get("content_type"),
            error=doc.get("error"),
        )


@dataclass(frozen=True, slots=True)
class Job:
    """A job as relay holds it. `ticket` and `webhook_url` are set on what `register` answers."""

    source: str
    job_id: str
    status: str  # pending, running, succeeded, failed, canceled or timed_out
    result: Any
    error: Any
    late: bool
    metadata: dict[str, Any]
    created_at: datetime
    updated_at: datetime
    finished_at: datetime | None
    deadline: datetime | None
    callbacks: int = 0
    files: tuple[File, ...] = ()
    ticket: str | None = None
    webhook_url: str | None = None
    progress: Any = None  # the latest non-final callback's payload (a `job.progress` event's news)
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @property
    def is_final(self) -> bool:
        """Whether the job has ended (succeeded, failed, canceled or timed out)."""
        return self.status in FINAL_STATUSES

    @classmethod
    def from_dict(cls, doc: dict[str, Any]) -> Job:
        """A job from relay's job object (fields relay adds later are kept in `raw`)."""
        return cls(
            source=doc["source"],
            job_id=doc["job_id"],
            status=doc["status"],
            result=doc.get("result"),
            error=doc.get("error"),
            late=bool(doc.get("late", False)),
            metadata=doc.get("metadata") or {},
            created_at=_required_time(doc["created_at"]),
            updated_at=_required_time(doc["updated_at"]),
            finished_at=_time(doc.get("finished_at")),
            deadline=_time(doc.get("deadline")),
            callbacks=int(doc.get("callbacks", 0)),
            files=tuple(File.from_dict(f) for f in doc.get("files") or ()),
            ticket=doc.get("ticket"),
            webhook_url=doc.get("webhook_url"),
            progress=doc.get("progress"),
            raw=doc,
        )

    def to_dict(self) -> dict[str, Any]:
        """The job object exactly as relay sent it."""
        return dict(self.raw)


@dataclass(frozen=True, slots=True)
class Event:
    """One message of a job's event stream: `id` is its position in the stream (what `Last-Event-ID` names),
    `event_id` the `evt_...` id a delivery of it carries as `webhook-id`."""

    id: int
    type: str  # job.running, job.progress, job.succeeded, job.failed, job.canceled, job.timed_out...
    event_id: str
    timestamp: datetime
    job: Job
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_message(cls, position: int, body: dict[str, Any]) -> Event:
        """An event from its stream position and its `data:` body (`{"id", "type", "timestamp", "data"}`)."""
        return cls(
            id=position,
            type=body["type"],
            event_id=body["id"],
            timestamp=_required_time(body["timestamp"]),
            job=Job.from_dict(body["data"]),
            raw=body,
        )

    def to_dict(self) -> dict[str, Any]:
        """The event as the CLI prints it: position, ids, type, time and the job object."""
        return {
            "id": self.id,
            "event_id": self.event_id,
            "type": self.type,
            "timestamp": self.raw.get("timestamp"),
            "job": self.job.to_dict(),
        }


@dataclass(frozen=True, slots=True)
class Subscription:
    """A subscription; `secret` is set only on what `create_subscription` answers (shown once)."""

    id: str
    url: str
    source: str | None
    events: tuple[str, ...] | None
    created_at: datetime
    disabled: bool
    disabled_at: datetime | None
    disabled_reason: str | None
    secret: str | None = None
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_dict(cls, doc: dict[str, Any]) -> Subscription:
        events = doc.get("events")
        return cls(
            id=doc["id"],
            url=doc["url"],
            source=doc.get("source"),
            events=None if events is None else tuple(events),
            created_at=_required_time(doc["created_at"]),
            disabled=bool(doc.get("disabled", False)),
            disabled_at=_time(doc.get("disabled_at")),
            disabled_reason=doc.get("disabled_reason"),
            secret=doc.get("secret"),
            raw=doc,
        )


@dataclass(frozen=True, slots=True)
class DeliveryAttempt:
    """One try of a delivery: its time, the answer's status code (None without one), latency and error."""

    at: datetime
    status_code: int | None
    latency_ms: float
    error: str | None
    response: str | None

    @classmethod
    def from_dict(cls, doc: dict[str, Any]) -> DeliveryAttempt:
        return cls(
            at=_required_time(doc["at"]),
            status_code=doc.get("status_code"),
            latency_ms=float(doc.get("latency_ms") or 0.0),
            error=doc.get("error"),
            response=doc.get("response"),
        )


@dataclass(frozen=True, slots=True)
class Delivery:
    """One event on its way to one subscriber."""

    id: str
    event_id: str
    event_type: str
    source: str
    job_id: str
    subscription_id: str | None
    url: str
    status: str  # pending, delivering, retrying, delivered or dead
    attempt_count: int
    next_attempt_at: datetime | None
    created_at: datetime
    updated_at: datetime
    delivered_at: datetime | None
    last_status_code: int | None
    last_error: str | None
    attempts: tuple[DeliveryAttempt, ...] = ()
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_dict(cls, doc: dict[str, Any]) -> Delivery:
        return cls(
            id=doc["id"],
            event_id=doc["event_id"],
            event_type=doc["event_type"],
            source=doc["source"],
            job_id=doc["job_id"],
            subscription_id=doc.get("subscription_id"),
            url=doc["url"],
            status=doc["status"],
            attempt_count=int(doc.get("attempt_count", 0)),
            next_attempt_at=_time(doc.get("next_attempt_at")),
            created_at=_required_time(doc["created_at"]),
            updated_at=_required_time(doc["updated_at"]),
            delivered_at=_time(doc.get("delivered_at")),
            last_status_code=doc.get("last_status_code"),
            last_error=doc.get("last_error"),
            attempts=tuple(DeliveryAttempt.from_dict(a) for a in doc.get("attempts") or ()),
            raw=doc,
        )
