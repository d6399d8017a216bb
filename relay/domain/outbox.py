"""The delivery rules: who receives an event, which due deliveries a round may take, and what an attempt's
answer does to its delivery. Every backend calls these inside its own transactions; no I/O, time passed in.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeAlias

import orjson

from relay.backoff import next_attempt_at, retry_after_s
from relay.models import Event, Job, record
from relay.outbox_models import (
    FINAL_EVENT_TYPES,
    AttemptResult,
    Claim,
    Delivery,
    DeliveryAttempt,
    DeliveryStatus,
    Subscription,
)

if TYPE_CHECKING:
    from relay.settings import Settings

__all__ = [
    "QUICK_FAILURE_S",
    "UNSETTLED_STATUSES",
    "Answer",
    "Recipient",
    "RetryPolicy",
    "Settlement",
    "Target",
    "after_attempt",
    "backfill_targets",
    "backfilled_events",
    "candidate_window",
    "claimable",
    "delivery_body",
    "dispatch",
    "ended_at",
    "endpoint_room",
    "recipient",
    "settlement_of",
    "targets_for",
]

QUICK_FAILURE_S = 1.0  # a connection failing faster than this gets one immediate retry

# A delivery not yet delivered or dead: claimable once due (a lease that ran out is due again), and until
# then it holds back its job's later events to the same target, which keeps them in order.
UNSETTLED_STATUSES = (DeliveryStatus.PENDING, DeliveryStatus.RETRYING, DeliveryStatus.DELIVERING)


# --- who receives an event --------------------------------------------------------------------------------


# A subscription as fan-out matches it: (id, URL, source or None for every source, the event types it
# wants). A plain tuple, not a named one: fan-out unpacks one per subscription for every event, and the
# interpreter's fast unpacking is for exact tuples only (a NamedTuple made fan-out 2.5 times slower).
Recipient: TypeAlias = tuple[str, str, str | None, frozenset[str]]

# Where an event goes: (subscription id, or None for a job's own subscriber; URL; what the job's events are
# kept in order for: the subscription, or the per-job URL). A plain tuple for the same reason.
Target: TypeAlias = tuple[str | None, str, str]


def recipient(subscription_id: str, url: str, source: str | None, events: Sequence[str] | None) -> Recipient:
    """A subscription's recipient; naming no events means every final event (job.running only when named)."""
    return (subscription_id, url, source, FINAL_EVENT_TYPES if events is None else frozenset(events))


def targets_for(event_type: str, job: Job, recipients: Iterable[Recipient]) -> list[Target]:
    """Everyone an event of `job` goes to: the subscriptions that match, and its own subscribers if final."""
    targets: list[Target] = [
        (sub_id, url, sub_id)
        for sub_id, url, source, event_types in recipients
        if (source is None or source == job.source) and event_type in event_types
    ]
    if event_type in FINAL_EVENT_TYPES:
        targets.extend((None, url, url) for url in job.subscribers)
    return targets


def backfill_targets(job: Job, added_urls: Iterable[str]) -> list[Target]:
    """Per-job subscribers added to a finished job, which get its final events; none while it runs."""
    return [(None, url, url) for url in added_urls] if job.final else []


def backfilled_events(events: Iterable[Event]) -> list[Event]:
    """What a late per-job subscriber gets of a job's events: the final ones (a time-out, a late result)."""
    return [event for event in events if event.type in FINAL_EVENT_TYPES]


# --- which due deliveries a round takes -------------------------------------------------------------------


def endpoint_room(
    limited: Mapping[str, int], in_flight: Mapping[str, int], per_endpoint: int
) -> tuple[dict[str, int], list[str]]:
    """Room per endpoint for a claim, and the endpoints with none.

    `limited` holds the endpoints whose breaker allows less than `per_endpoint` (0 paused, 1 probing); the
    attempts already in flight to an endpoint use up its room.
    """
    room = dict(limited)
    for endpoint, running in in_flight.items():
        room[endpoint] = room.get(endpoint, per_endpoint) - running
    blocked = [endpoint for endpoint, left in room.items() if left <= 0]
    return {endpoint: left for endpoint, left in room.items() if left > 0}, blocked


def candidate_window(limit: int) -> int:
    """How many due deliveries to consider for a claim of `limit`."""
    # Rows of endpoints already full are passed over; the next round skips them.
    return max(4 * limit, 64)


def claimable(
    candidates: Iterable[tuple[int, str]],
    *,
    limit: int,
    per_endpoint: int,
    room: Mapping[str, int],
) -> list[int]:
    """The ids of due `(id, endpoint)` candidates, in their order, that one round takes.

    At most `limit` in all, and `room[endpoint]` (default `per_endpoint`) per endpoint. The candidates hold
    no endpoint without room (the candidate query leaves the blocked ones out).
    """
    taken: dict[str, int] = {}
    ids: list[int] = []
    for row_id, endpoint in candidates:  # iterated lazily: a query stops at the limit
        if len(ids) >= limit:
            break
        count = taken.get(endpoint, 0)
        if count >= room.get(endpoint, per_endpoint):
            continue
        taken[endpoint] = count + 1
        ids.append(row_id)
    return ids


def delivery_body(event_row: int, event_id: str, event_type: str, created_at: float, data: bytes) -> bytes:
    """An event's delivery body, `{"id", "type", "timestamp", "data"}`, around its stored `data` as it is."""
    head = Event(event_row, event_id, "", "", event_type, created_at, {}).to_public()
    del head["data"]
    # The stored job is spliced in, not re-parsed: the same bytes on every attempt, at no parsing cost.
    return orjson.dumps(head)[:-1] + b',"data":' + data + b"}"


def dispatch(
    delivery: Delivery, subscription: Subscription | None, body: bytes | None, now: float
) -> Claim | str:
    """A taken delivery as a claim to send, or the reason it is dead instead.

    A subscription's delivery is signed with its secrets as of `now`; a per-job subscriber's with none of
    its own (the deliverer signs it with `signing_secret`).
    """
    if delivery.subscription_id is not None:
        if subscription is None:
            return "subscription deleted"
        if subscription.disabled_at is not None:
            return "subscription disabled"
    if body is None:
        return "the event no longer exists"
    return Claim(delivery, body, () if subscription is None else subscription.secrets(now))


# --- what an attempt's answer does ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How failed attempts are retried."""

    schedule_s: tuple[float, ...]  # the delays before retry 1, 2, ...; then dead
    jitter: float  # each delay is scaled by a random factor in [1 - jitter, 1 + jitter]
    retry_after_max_s: float  # the longest Retry-After honoured

    @classmethod
    def from_settings(cls, settings: Settings) -> RetryPolicy:
        """The policy the configuration sets."""
        return cls(settings.retry_schedule_s, settings.retry_jitter, settings.retry_after_max_s)


@record
class Answer:
    """What one POST came to."""

    attempt: DeliveryAttempt
    retry_after: str | None = None  # the header, as sent
    connection_failed: bool = False  # no connection was made (a destination the guard refused is not this)


def ended_at(attempt: DeliveryAttempt) -> float:
    """When an attempt's answer (or failure) came."""
    return attempt.at + attempt.latency_ms / 1000


def after_attempt(
    delivery: Delivery,
    answer: Answer,
    policy: RetryPolicy,
    rand: Callable[[], float] = random.random,
) -> AttemptResult:
    """The state an answer leaves its delivery in, at the time the answer came.

    A 2xx is delivered; a 410 is dead and disables the subscription; a connection that failed fast is
    retried at once, once per delivery; anything else is retried on the schedule (Retry-After moves a 429 or
    503's retry, never adds one) and is dead once the schedule is spent.
    """
    attempt = answer.attempt
    done = ended_at(attempt)
    code = attempt.status_code
    quick, disable = False, None
    when: float | None
    if code is not None and 200 <= code < 300:
        status, when = DeliveryStatus.DELIVERED, None
    elif code == 410:  # the subscriber says it is gone for good
        status, when, disable = DeliveryStatus.DEAD, None, "410 Gone"
    elif (
        answer.connection_failed
        and attempt.latency_ms < QUICK_FAILURE_S * 1000
        and not delivery.quick_retried
    ):
        status, when, quick = DeliveryStatus.RETRYING, done, True
    else:
        when = next_attempt_at(delivery.failures + 1, done, policy.schedule_s, policy.jitter, rand)
        asked = retry_after_s(answer.retry_after, done) if code in (429, 503) else None
        if when is not None and asked is not None:
            when = done + min(asked, policy.retry_after_max_s)
        status = DeliveryStatus.DEAD if when is None else DeliveryStatus.RETRYING
    return AttemptResult(
        delivery.id, delivery.attempts, attempt, status, when, quick, disable, delivery.subscription_id
    )


@record
class Settlement:
    """What recording an attempt's result writes on its delivery, when its claim still holds."""

    status: DeliveryStatus
    next_attempt_at: float | None
    updated_at: float
    delivered_at: float | None  # None: left as it was
    failures_added: int  # 1 when the attempt used up a scheduled retry
    quick_retried: bool  # the delivery has had its one quick retry (never set back by a later attempt)


def settlement_of(result: AttemptResult) -> Settlement:
    """How a result changes its delivery: the quick retry does not count against the schedule."""
    done = ended_at(result.attempt)
    status = result.status
    failed = status in (DeliveryStatus.RETRYING, DeliveryStatus.DEAD) and not result.quick
    return Settlement(
        status,
        result.next_attempt_at,
        done,
        done if status == DeliveryStatus.DELIVERED else None,
        int(failed),
        result.quick,
    )
