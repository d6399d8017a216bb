"""Value types of the outbox: subscriptions, deliveries and their attempts. No I/O here; what happens to a
delivery is in relay/domain/outbox.py."""

from __future__ import annotations

import enum
from dataclasses import field
from typing import Any
from urllib.parse import urlsplit

from relay.models import FINAL_STATUSES, Status, iso, record

__all__ = [
    "EVENT_TYPES",
    "FINAL_EVENT_TYPES",
    "PROGRESS_EVENT_TYPE",
    "AttemptResult",
    "Claim",
    "Delivery",
    "DeliveryAttempt",
    "DeliveryStatus",
    "Subscription",
    "SubscriptionChange",
    "Unchanged",
    "endpoint_of",
]

# A non-final callback whose payload changed (relay/domain/progress.py); sent only when named.
PROGRESS_EVENT_TYPE = "job.progress"
EVENT_TYPES = frozenset(f"job.{s.value}" for s in Status if s != Status.PENDING) | {
    PROGRESS_EVENT_TYPE,
    "job.archived",  # relay/file_models.py ARCHIVED_EVENT_TYPE: once a job's files are all settled
}
# What a subscriber gets when it names no events; job.running and job.progress only when named.
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


class Unchanged(enum.Enum):
    """A field a `SubscriptionChange` leaves as it is (None is a value there: every source, every event)."""

    UNCHANGED = "unchanged"


@record
class SubscriptionChange:
    """What `PATCH /v1/subscriptions/{id}` changes; each field left `UNCHANGED` keeps its value."""

    url: str | Unchanged = Unchanged.UNCHANGED
    source: str | Unchanged | None = Unchanged.UNCHANGED
    events: tuple[str, ...] | Unchanged | None = Unchanged.UNCHANGED
    enabled: bool | Unchanged = Unchanged.UNCHANGED


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
    subscription_id: str | None = None  # the delivery's subscription (None: a job's own subscriber)


@record
class Claim:
    """A delivery taken for one attempt: what to send, and the secrets signing it (none: `signing_secret`)."""

    delivery: Delivery
    body: bytes
    secrets: tuple[str, ...]
