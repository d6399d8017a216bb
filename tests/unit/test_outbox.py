"""The delivery rules of `relay.domain.outbox`, without a database or a network."""

from __future__ import annotations

from collections.abc import Iterator
from email.utils import formatdate
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from relay.backoff import DEFAULT_SCHEDULE_S
from relay.domain.outbox import (
    QUICK_FAILURE_S,
    Answer,
    RetryPolicy,
    after_attempt,
    backfill_targets,
    backfilled_events,
    candidate_window,
    claimable,
    dispatch,
    ended_at,
    endpoint_room,
    recipient,
    settlement_of,
    targets_for,
)
from relay.models import Event, Job, Status
from relay.outbox_models import (
    EVENT_TYPES,
    FINAL_EVENT_TYPES,
    AttemptResult,
    Claim,
    Delivery,
    DeliveryAttempt,
    DeliveryStatus,
    Subscription,
)
from relay.settings import Settings

NOW = 1_800_000_000.0
URL_A = "https://a.example.com/hook"
URL_B = "https://b.example.com/hook"
EP_A = "https://a.example.com:443"
EP_B = "https://b.example.com:443"
NO_JITTER = RetryPolicy(DEFAULT_SCHEDULE_S, 0.0, 3600.0)


def job(status: Status = Status.SUCCEEDED, source: str = "demo", subscribers: tuple[str, ...] = ()) -> Job:
    return Job(source, "j1", status, None, None, False, {}, NOW, NOW, None, None, 1, 7, subscribers)


def delivery(
    *, failures: int = 0, quick_retried: bool = False, subscription_id: str | None = "sub_a"
) -> Delivery:
    return Delivery(
        id=42,
        event_row=9,
        event_id="evt_1",
        event_type="job.succeeded",
        source="demo",
        job_id="j1",
        subscription_id=subscription_id,
        url=URL_A,
        endpoint=EP_A,
        status=DeliveryStatus.DELIVERING,
        attempts=failures + 1,
        failures=failures,
        quick_retried=quick_retried,
        next_attempt_at=NOW + 45,
        created_at=NOW,
        updated_at=NOW,
    )


def subscription(**fields: Any) -> Subscription:
    return Subscription(
        id="sub_a", url=URL_A, source=None, events=None, secret="whsec_new", created_at=NOW, **fields
    )


def answered(code: int | None, *, latency_ms: float = 20.0, retry_after: str | None = None) -> Answer:
    return Answer(DeliveryAttempt(NOW, code, latency_ms), retry_after)


def refused(latency_ms: float) -> Answer:
    return Answer(DeliveryAttempt(NOW, None, latency_ms, "connection failed"), connection_failed=True)


# --- who receives an event --------------------------------------------------------------------------------


def test_a_subscription_naming_no_events_gets_the_final_ones() -> None:
    """`events` None means every final event; named events are exactly those."""
    assert recipient("s", URL_A, None, None) == ("s", URL_A, None, FINAL_EVENT_TYPES)
    assert recipient("s", URL_A, "demo", ["job.running"]) == ("s", URL_A, "demo", frozenset({"job.running"}))


def test_subscriptions_match_by_source_and_event_type() -> None:
    """Subscriptions of every source or of the job's match; of another source or event type they do not."""
    recipients = [
        recipient("all", URL_A, None, None),
        recipient("mine", URL_B, "demo", ["job.succeeded"]),
        recipient("other", URL_A, "replicate", None),
        recipient("running", URL_A, "demo", ["job.running"]),
    ]
    assert targets_for("job.succeeded", job(), recipients) == [("all", URL_A, "all"), ("mine", URL_B, "mine")]
    assert targets_for("job.running", job(Status.RUNNING), recipients) == [("running", URL_A, "running")]


def test_per_job_subscribers_get_final_events_only() -> None:
    """A job's own URLs (each its own order) follow the subscriptions for final events; no job.running."""
    own = job(subscribers=(URL_A, URL_B))
    assert targets_for("job.failed", own, []) == [(None, URL_A, URL_A), (None, URL_B, URL_B)]
    assert targets_for("job.running", own, []) == []


@given(event_type=st.sampled_from(sorted(EVENT_TYPES)), source=st.sampled_from(["demo", "replicate"]))
def test_every_target_wants_the_event(event_type: str, source: str) -> None:
    """Whatever the event, each target is a recipient that asked for it or, for a final event, a job URL."""
    recipients = [
        recipient(f"s{i}", URL_A, src, events)
        for i, (src, events) in enumerate(
            [
                (None, None),
                ("demo", ["job.running"]),
                ("replicate", sorted(EVENT_TYPES)),
                (None, ["job.failed"]),
            ]
        )
    ]
    wanted = {sub_id for sub_id, _, src, types in recipients if src in (None, source) and event_type in types}
    targets = targets_for(event_type, job(source=source, subscribers=(URL_B,)), recipients)
    subscribed = [(sub_id, key) for sub_id, _, key in targets if sub_id is not None]
    assert {sub_id for sub_id, _ in subscribed} == wanted
    assert all(key == sub_id for sub_id, key in subscribed)  # kept in order per subscription
    assert ((None, URL_B, URL_B) in targets) == (event_type in FINAL_EVENT_TYPES)


def test_late_per_job_subscribers_get_the_final_events_of_a_finished_job() -> None:
    """Added to a running job they get nothing now; added to a finished one they get its final events."""
    assert backfill_targets(job(Status.RUNNING), [URL_A]) == []
    assert backfill_targets(job(Status.TIMED_OUT), [URL_A, URL_B]) == [
        (None, URL_A, URL_A),
        (None, URL_B, URL_B),
    ]
    events = [
        Event(i, f"evt_{i}", "demo", "j1", kind, NOW, {})
        for i, kind in enumerate(["job.running", "job.timed_out", "job.succeeded"])
    ]
    assert [e.type for e in backfilled_events(events)] == ["job.timed_out", "job.succeeded"]


# --- which due deliveries a round takes -------------------------------------------------------------------


def test_room_is_the_breaker_s_or_the_limit_less_what_is_in_flight() -> None:
    """In-flight attempts use up room; an endpoint with none left (or paused) is blocked."""
    room, blocked = endpoint_room({EP_A: 1, "paused": 0}, {EP_A: 1, EP_B: 3, "busy": 8}, 8)
    assert room == {EP_B: 5}
    assert sorted(blocked) == sorted([EP_A, "paused", "busy"])
    assert endpoint_room({}, {}, 8) == ({}, [])


def test_the_candidate_window_looks_past_full_endpoints() -> None:
    """A claim considers four times its limit, and never fewer than 64 rows."""
    assert candidate_window(1) == 64
    assert candidate_window(64) == 256


def test_claims_take_candidates_in_order_within_each_endpoint_s_room() -> None:
    """Up to `limit`, `per_endpoint` by default, the endpoint's own room where given, nothing when blocked."""
    candidates = [(1, EP_A), (2, EP_A), (3, EP_B), (4, EP_A), (5, "c"), (6, EP_B), (7, "d")]
    assert claimable(candidates, limit=10, per_endpoint=2, room={}) == [1, 2, 3, 5, 6, 7]
    # A blocked endpoint's rows are not candidates (the candidate query leaves them out).
    unblocked = [(row_id, endpoint) for row_id, endpoint in candidates if endpoint != "c"]
    assert claimable(unblocked, limit=10, per_endpoint=2, room={EP_A: 1}) == [1, 3, 6, 7]
    assert claimable(candidates, limit=3, per_endpoint=8, room={}) == [1, 2, 3]


def test_a_claim_stops_reading_candidates_at_its_limit() -> None:
    """Candidates are read lazily, so a query is not stepped past what the claim takes."""
    read: list[int] = []

    def rows() -> Iterator[tuple[int, str]]:
        for row_id in range(100):
            read.append(row_id)
            yield row_id, EP_A

    assert claimable(rows(), limit=2, per_endpoint=8, room={}) == [0, 1]
    assert read == [0, 1, 2]


@given(
    endpoints=st.lists(st.sampled_from(["a", "b", "c", "d"]), max_size=40),
    limit=st.integers(0, 20),
    per_endpoint=st.integers(0, 5),
    room=st.dictionaries(st.sampled_from(["a", "b"]), st.integers(1, 5)),
    blocked=st.sets(st.sampled_from(["b", "c"])),
)
def test_a_claim_never_exceeds_a_limit(
    endpoints: list[str], limit: int, per_endpoint: int, room: dict[str, int], blocked: set[str]
) -> None:
    """Whatever the candidates, no limit, endpoint room or block is exceeded, and the order is kept."""
    # As the candidate query selects them: no row of a blocked endpoint.
    candidates = [(i, endpoint) for i, endpoint in enumerate(endpoints) if endpoint not in blocked]
    ids = claimable(candidates, limit=limit, per_endpoint=per_endpoint, room=room)
    assert len(ids) <= limit
    assert ids == sorted(ids)
    taken = [endpoints[i] for i in ids]
    for endpoint in set(taken):
        assert endpoint not in blocked
        assert taken.count(endpoint) <= room.get(endpoint, per_endpoint)


def test_a_subscription_s_delivery_is_signed_with_its_secrets_now() -> None:
    """During a rotation's overlap both secrets sign; after it only the current one."""
    rotated = subscription(previous_secret="whsec_old", previous_secret_until=NOW + 60)
    assert dispatch(delivery(), rotated, b"{}", NOW) == Claim(delivery(), b"{}", ("whsec_new", "whsec_old"))
    assert dispatch(delivery(), rotated, b"{}", NOW + 60) == Claim(delivery(), b"{}", ("whsec_new",))


def test_a_per_job_delivery_carries_no_secrets_of_its_own() -> None:
    """The deliverer signs it with `signing_secret`."""
    own = delivery(subscription_id=None)
    assert dispatch(own, None, b"{}", NOW) == Claim(own, b"{}", ())


def test_a_delivery_that_cannot_go_out_is_dead_with_the_reason() -> None:
    """Its subscription deleted or disabled, or its event gone."""
    assert dispatch(delivery(), None, b"{}", NOW) == "subscription deleted"
    assert dispatch(delivery(), subscription(disabled_at=NOW), b"{}", NOW) == "subscription disabled"
    assert dispatch(delivery(), subscription(), None, NOW) == "the event no longer exists"
    assert dispatch(delivery(subscription_id=None), None, None, NOW) == "the event no longer exists"


# --- what an attempt's answer does ------------------------------------------------------------------------


def test_the_policy_comes_from_the_settings() -> None:
    """Schedule, jitter and the Retry-After cap as configured; the quick-retry threshold is one second."""
    settings = Settings(secret_key="k", api_keys=("a",), retry_schedule_s=(1.0, 2.0), retry_jitter=0.3)
    assert RetryPolicy.from_settings(settings) == RetryPolicy((1.0, 2.0), 0.3, 3600.0)
    assert QUICK_FAILURE_S == 1.0


def test_an_attempt_ends_after_its_latency() -> None:
    """Its answer came `latency_ms` after it started."""
    assert ended_at(DeliveryAttempt(NOW, 200, 1500.0)) == NOW + 1.5


@given(code=st.integers(200, 299), failures=st.integers(0, 7), quick_retried=st.booleans())
def test_a_2xx_is_always_delivered(code: int, failures: int, quick_retried: bool) -> None:
    """Whatever came before, a 2xx delivers, with no next attempt and the claim's token."""
    before = delivery(failures=failures, quick_retried=quick_retried)
    result = after_attempt(before, answered(code), NO_JITTER)
    assert (result.status, result.next_attempt_at, result.quick, result.disable_subscription) == (
        DeliveryStatus.DELIVERED,
        None,
        False,
        None,
    )
    assert (result.delivery_id, result.token) == (before.id, before.attempts)


@given(failures=st.integers(0, 7), quick_retried=st.booleans(), retry_after=st.sampled_from([None, "5"]))
def test_a_410_always_disables(failures: int, quick_retried: bool, retry_after: str | None) -> None:
    """410 Gone is dead at once and disables the subscription, whatever the schedule has left."""
    answer = answered(410, retry_after=retry_after)
    result = after_attempt(delivery(failures=failures, quick_retried=quick_retried), answer, NO_JITTER)
    assert (result.status, result.next_attempt_at, result.disable_subscription) == (
        DeliveryStatus.DEAD,
        None,
        "410 Gone",
    )


@given(
    schedule=st.lists(st.floats(0, 1e6), max_size=10).map(tuple),
    codes=st.lists(st.sampled_from([None, 302, 400, 429, 500, 503]), min_size=11, max_size=11),
)
def test_the_retry_schedule_is_followed_and_ends_in_dead(
    schedule: tuple[float, ...], codes: list[int | None]
) -> None:
    """Failure n is retried `schedule[n-1]` after its answer; the failure after the last delay is dead."""
    policy = RetryPolicy(schedule, 0.0, 3600.0)
    for failures, code in enumerate(codes[: len(schedule) + 1]):
        result = after_attempt(delivery(failures=failures), answered(code, latency_ms=40.0), policy)
        done = NOW + 0.04
        if failures < len(schedule):
            assert result.status == DeliveryStatus.RETRYING
            assert result.next_attempt_at == pytest.approx(done + schedule[failures])
        else:
            assert (result.status, result.next_attempt_at) == (DeliveryStatus.DEAD, None)
        assert not result.quick


def test_the_delay_is_jittered_by_the_draw() -> None:
    """A retry's delay is scaled by a factor in [1 - jitter, 1 + jitter]."""
    policy = RetryPolicy((100.0,), 0.2, 3600.0)
    low = after_attempt(delivery(), answered(500, latency_ms=0.0), policy, rand=lambda: 0.0)
    high = after_attempt(delivery(), answered(500, latency_ms=0.0), policy, rand=lambda: 1.0)
    assert low.next_attempt_at == pytest.approx(NOW + 80)
    assert high.next_attempt_at == pytest.approx(NOW + 120)


def test_a_fast_connection_failure_is_retried_at_once_once() -> None:
    """Refused in under the threshold: retried when it failed, not counted; the second time, the schedule."""
    first = after_attempt(delivery(), refused(5.0), NO_JITTER)
    assert (first.status, first.next_attempt_at, first.quick) == (DeliveryStatus.RETRYING, NOW + 0.005, True)
    again = after_attempt(delivery(quick_retried=True), refused(5.0), NO_JITTER)
    assert again.next_attempt_at == pytest.approx(NOW + 0.005 + 5)
    assert not again.quick


def test_a_slow_or_refused_by_the_guard_failure_waits_for_the_schedule() -> None:
    """A connection failing after the threshold, or a destination the guard refused, is no quick retry."""
    slow = after_attempt(delivery(), refused(QUICK_FAILURE_S * 1000), NO_JITTER)
    assert not slow.quick
    guarded = Answer(DeliveryAttempt(NOW, None, 1.0, "destination refused"), connection_failed=False)
    assert not after_attempt(delivery(), guarded, NO_JITTER).quick


@pytest.mark.parametrize("code", [429, 503])
def test_retry_after_moves_a_retry_within_the_cap(code: int) -> None:
    """Retry-After (seconds or an HTTP date) sets a 429's or 503's retry, up to `retry_after_max_s`."""
    policy = RetryPolicy(DEFAULT_SCHEDULE_S, 0.0, 600.0)
    asked = after_attempt(delivery(), answered(code, latency_ms=0.0, retry_after="120"), policy)
    assert asked.next_attempt_at == NOW + 120
    capped = after_attempt(delivery(), answered(code, latency_ms=0.0, retry_after="99999"), policy)
    assert capped.next_attempt_at == NOW + 600
    dated = answered(code, latency_ms=0.0, retry_after=formatdate(NOW + 90, usegmt=True))
    assert after_attempt(delivery(), dated, policy).next_attempt_at == pytest.approx(NOW + 90)


def test_retry_after_never_adds_a_retry_nor_applies_to_other_codes() -> None:
    """With the schedule spent a 503 is dead; a 500's Retry-After is ignored, as is a bad header."""
    spent = delivery(failures=len(DEFAULT_SCHEDULE_S))
    assert after_attempt(spent, answered(503, retry_after="1"), NO_JITTER).status == DeliveryStatus.DEAD
    other = after_attempt(delivery(), answered(500, latency_ms=0.0, retry_after="1"), NO_JITTER)
    assert other.next_attempt_at == NOW + DEFAULT_SCHEDULE_S[0]
    bad = after_attempt(delivery(), answered(429, latency_ms=0.0, retry_after="soon"), NO_JITTER)
    assert bad.next_attempt_at == NOW + DEFAULT_SCHEDULE_S[0]


def result_of(status: DeliveryStatus, *, quick: bool = False, when: float | None = None) -> AttemptResult:
    return AttemptResult(42, 3, DeliveryAttempt(NOW, None, 250.0), status, when, quick)


def test_recording_a_delivered_result_stamps_its_delivery() -> None:
    """Delivered at the answer's time, no failure counted."""
    settled = settlement_of(result_of(DeliveryStatus.DELIVERED))
    assert (settled.updated_at, settled.delivered_at, settled.failures_added) == (NOW + 0.25, NOW + 0.25, 0)


def test_a_failure_counts_against_the_schedule_but_the_quick_retry_does_not() -> None:
    """A retry or a dead end adds one failure; the quick retry adds none and marks the delivery."""
    retrying = settlement_of(result_of(DeliveryStatus.RETRYING, when=NOW + 5))
    assert (retrying.failures_added, retrying.next_attempt_at, retrying.delivered_at) == (1, NOW + 5, None)
    assert settlement_of(result_of(DeliveryStatus.DEAD)).failures_added == 1
    quick = settlement_of(result_of(DeliveryStatus.RETRYING, quick=True, when=NOW))
    assert (quick.failures_added, quick.quick_retried) == (0, True)
