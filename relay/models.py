"""Value types: jobs, callbacks, events, subscriptions and deliveries. No I/O here; what happens to a job
is in relay/domain/jobs.py."""

from __future__ import annotations

import enum
import math
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, TypeVar, dataclass_transform
from urllib.parse import urlsplit

__all__ = [
    "EVENT_TYPES",
    "FINAL_EVENT_TYPES",
    "FINAL_STATUSES",
    "MAX_TIMEOUT_S",
    "AttemptResult",
    "Callback",
    "CallbackRecord",
    "Claim",
    "Delivery",
    "DeliveryAttempt",
    "DeliveryStatus",
    "Event",
    "IngestOutcome",
    "Job",
    "Registration",
    "Status",
    "Subscription",
    "endpoint_of",
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


# --- subscriptions and deliveries ------------------------------------------------------------------------

EVENT_TYPES = frozenset(f"job.{s.value}" for s in Status if s != Status.PENDING)
# What a subscriber gets when it names no events; job.running only when named.
FINAL_EVENT_TYPES = frozenset(f"job.{s.value}" for s in FINAL_STATUSES)


def endpoint_of(url: str) -> str:
    """`scheme://host:port` of a URL: the unit that concurrency limits and the circuit breaker count by."""
    parts = urlsplit(url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    return f"{parts.scheme}://{(parts.hostname or '').lower()}:{port}"


@record
class Subscription:
    """A subscriber of every job of one source (or of all); `events` None means every final event."""

    id: str
    url: str
    source: str | None
    events: tuple[str, ...] | None
    secret: str = field(repr=False)
    created_at: float
    previous_secret: str | None = field(default=None, repr=False)
    previous_secret_until: float | None = None
    disabled_at: float | None = None
    disabled_reason: str | None = None

    def secrets(self, now: float) -> tuple[str, ...]:
        """The secrets signing a delivery now: the current one, and for a day after a rotation the old one."""
        previous, until = self.previous_secret, self.previous_secret_until
        if previous is not None and until is not None and now < until:
            return (self.secret, previous)
        return (self.secret,)

    def to_public(self, *, with_secret: bool = False) -> dict[str, Any]:
        body: dict[str, Any] = {
            "id": self.id,
            "url": self.url,
            "source": self.source,
            "events": None if self.events is None else list(self.events),
            "created_at": iso(self.created_at),
            "disabled": self.disabled_at is not None,
            "disabled_at": iso(self.disabled_at),
            "disabled_reason": self.disabled_reason,
            "previous_secret_expires_at": iso(self.previous_secret_until),
        }
        if with_secret:
            body["secret"] = self.secret
        return body


class DeliveryStatus(enum.StrEnum):
    PENDING = "pending"  # not tried yet
    DELIVERING = "delivering"  # claimed under a lease, in flight
    RETRYING = "retrying"  # failed, next attempt scheduled
    DELIVERED = "delivered"
    DEAD = "dead"  # given up: schedule spent, 410 Gone, or its subscription was deleted


@record
class DeliveryAttempt:
    """One POST to a subscriber and what came back."""

    at: float
    status_code: int | None
    latency_ms: float
    error: str | None = None
    response: bytes = b""  # the first bytes of the response body

    def to_public(self) -> dict[str, Any]:
        return {
            "at": iso(self.at),
            "status_code": self.status_code,
            "latency_ms": round(self.latency_ms, 3),
            "error": self.error,
            "response": self.response.decode("utf-8", "replace"),
        }


@record
class Delivery:
    """One event on its way to one subscriber (a subscription, or a job's own subscriber URL)."""

    id: int
    event_row: int
    event_id: str
    event_type: str
    source: str
    job_id: str
    subscription_id: str | None
    url: str
    endpoint: str
    status: DeliveryStatus
    attempts: int  # every attempt claimed so far; the claim token of the one in flight
    failures: int  # failed attempts counted against the retry schedule
    quick_retried: bool
    next_attempt_at: float | None
    created_at: float
    updated_at: float
    delivered_at: float | None = None
    last_status_code: int | None = None
    last_error: str | None = None
    history: tuple[DeliveryAttempt, ...] = ()

    @property
    def public_id(self) -> str:
        return f"dlv_{self.id}"

    def to_public(self) -> dict[str, Any]:
        return {
            "id": self.public_id,
            "event_id": self.event_id,
            "event_type": self.event_type,
            "source": self.source,
            "job_id": self.job_id,
            "subscription_id": self.subscription_id,
            "url": self.url,
            "status": self.status.value,
            "attempt_count": self.attempts,
            # While in flight the column holds the lease's end, which is no attempt time.
            "next_attempt_at": None if self.status == "delivering" else iso(self.next_attempt_at),
            "created_at": iso(self.created_at),
            "updated_at": iso(self.updated_at),
            "delivered_at": iso(self.delivered_at),
            "last_status_code": self.last_status_code,
            "last_error": self.last_error,
            "attempts": [attempt.to_public() for attempt in self.history],
        }


@record
class AttemptResult:
    """An attempt to record and the state it leaves its delivery in."""

    delivery_id: int
    token: int  # the claim's attempt number: the result of a claim that was lost is not applied
    attempt: DeliveryAttempt
    status: DeliveryStatus
    next_attempt_at: float | None = None
    quick: bool = False  # the one quick retry: not counted against the schedule
    disable_subscription: str | None = None  # the reason, when the answer disables the subscription


@record
class Claim:
    """A delivery taken for one attempt: what to send, and the secrets signing it (none: `signing_secret`)."""

    delivery: Delivery
    body: bytes
    secrets: tuple[str, ...]
