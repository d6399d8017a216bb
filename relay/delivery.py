"""The deliverer: claims due deliveries under a lease, has them POSTed signed (`relay.delivery_http`), records
attempts.

What an answer means for its delivery (delivered, retried when, dead) is decided by `relay.domain.outbox`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable

from relay.breaker import Breakers
from relay.delivery_http import DeliveryClient, post_signed
from relay.domain.outbox import Answer, RetryPolicy, after_attempt, ended_at, endpoint_room
from relay.leased_work import LeasedWorkLoop, count_down
from relay.logs import log_event
from relay.metrics import Metrics
from relay.models import iso
from relay.outbox_models import AttemptResult, Claim, Delivery, DeliveryStatus
from relay.settings import Settings
from relay.store import OutboxStore

__all__ = ["Deliverer"]

log = logging.getLogger(__name__)

# A round holds up to this many times the attempts that may run at once: the rest wait, ready, for a slot.
CLAIM_DEPTH = 4


# What each attempt's result is logged as: a success only at debug (one a delivery: the metrics count them).
_ATTEMPT_EVENTS = {
    DeliveryStatus.DELIVERED: (logging.DEBUG, "delivery.delivered"),
    DeliveryStatus.RETRYING: (logging.INFO, "delivery.failed"),
    DeliveryStatus.DEAD: (logging.WARNING, "delivery.dead"),
}


def _log_attempt(delivery: Delivery, result: AttemptResult) -> None:
    """One line for an attempt's result, and `subscription.disabled` when the answer disables its
    subscription. The endpoint (`scheme://host:port`) stands for the URL: its path or query may be secret."""
    level, event = _ATTEMPT_EVENTS.get(result.status, (logging.INFO, "delivery.failed"))
    attempt = result.attempt
    if log.isEnabledFor(level):
        log_event(
            log,
            level,
            event,
            delivery_id=delivery.public_id,
            webhook_id=delivery.event_id,
            subscription_id=delivery.subscription_id,
            source=delivery.source,
            job_id=delivery.job_id,
            event_type=delivery.event_type,
            endpoint=delivery.endpoint,
            attempt=delivery.attempts,
            status=result.status.value,
            status_code=attempt.status_code,
            error=attempt.error,
            latency_ms=round(attempt.latency_ms, 2),
            next_attempt_at=iso(result.next_attempt_at),
        )
    if result.disable_subscription is not None and result.subscription_id is not None:
        log_event(
            log,
            logging.WARNING,
            "subscription.disabled",
            subscription_id=result.subscription_id,
            reason=result.disable_subscription,
            endpoint=delivery.endpoint,
            delivery_id=delivery.public_id,
        )


class Deliverer(LeasedWorkLoop[Claim, AttemptResult]):
    """Runs in the serve process. Each round claims what is due and starts one task per attempt.

    Isolation: at most `endpoint_concurrency` attempts are in flight per endpoint and `delivery_concurrency`
    in all, and an endpoint whose circuit breaker is open is not claimed for, so an endpoint that hangs or
    fails holds a few slots, never the healthy endpoints' deliveries.

    A round claims up to `CLAIM_DEPTH` times what can run at once; the rest wait, ready to go the moment a
    slot frees, so a slot waits for an answer rather than for the store's next round (docs/decisions.md). A
    ready claim starts within one attempt's timeout of its round or is let go (its lease lapses and it is
    claimed again), so the lease covers two attempts whatever the depth.
    """

    name = "deliverer"

    def __init__(
        self,
        settings: Settings,
        store: OutboxStore,
        http: DeliveryClient,
        clock: Callable[[], float] = time.time,
        metrics: Metrics | None = None,
    ) -> None:
        super().__init__(settings.delivery_poll_s, clock)
        self._settings = settings
        self._policy = RetryPolicy.from_settings(settings)
        self._store = store
        self._http = http.session
        self._metrics = metrics
        self.breakers = Breakers(
            settings.circuit_failures, settings.circuit_open_s, settings.circuit_open_max_s
        )
        self._held: dict[str, int] = {}  # claims per endpoint: running or ready
        self._ready: deque[tuple[Claim, float, float]] = deque()  # claimed, waiting for a slot, in order
        self.lease_s = 2 * settings.delivery_timeout_s + settings.delivery_lease_margin_s

    async def recover(self) -> None:
        """Make deliveries a previous process left in flight due again."""
        try:
            recovered = await self._store.recover_deliveries(self.clock())
            if recovered:
                log.info("%d delivery(ies) in flight at the last stop are due again", recovered)
        except Exception:
            log.exception("recovering deliveries in flight failed; their leases will expire instead")

    async def record(self, settled: list[AttemptResult], now: float) -> None:
        if not settled:
            return
        try:
            await self._store.finish_deliveries(settled)
        except Exception:  # their leases expire and they are sent again (same webhook-id)
            log.exception("recording %d delivery attempt(s) failed", len(settled))

    async def run_once(self, now: float) -> int:
        """Record ended attempts, claim what is due at `now` within the free room, and start those.

        The records go with the claim, in one store call: a round costs one transaction however many attempts
        ended since the last, and the claim sees the deliveries just recorded (a job's next event can go at
        once). Answers how many were claimed.
        """
        free = CLAIM_DEPTH * self._settings.delivery_concurrency - len(self._tasks) - len(self._ready)
        self._filled = False
        settled = self._take_settled()
        if free <= 0:
            await self.record(settled, now)
            return 0
        # Claims held per endpoint: those running and those ready. A paused or probing endpoint's room is what
        # its breaker allows, held claims included.
        per_endpoint = CLAIM_DEPTH * self._settings.endpoint_concurrency
        limited = self.breakers.limited(now, self._settings.endpoint_concurrency)
        room, blocked = endpoint_room(limited, self._held, per_endpoint)
        try:
            claims = await self._store.claim_deliveries(
                now,
                limit=free,
                lease_s=self.lease_s,
                per_endpoint=per_endpoint,
                room=room,
                blocked=blocked,
                finished=settled,
            )
        except Exception:
            # The loop backs off and logs the traceback; the attempts' leases expire and they go again
            # (same webhook-id): one line here.
            if settled:
                log.error("recording %d delivery attempt(s) failed", len(settled))
            raise
        self._filled = len(claims) == free
        started = time.monotonic()
        for claim in claims:
            endpoint = claim.delivery.endpoint
            self._held[endpoint] = self._held.get(endpoint, 0) + 1
            self._ready.append((claim, now, started))
        self._start_ready()
        return len(claims)

    def _start_ready(self) -> None:
        """Start the ready claims, oldest first, that have a slot now, in all and at their endpoint; let go of
        those that waited past an attempt's timeout (their lease would not cover their own attempt)."""
        if not self._ready:
            return
        per_endpoint, waiting = self._settings.endpoint_concurrency, deque[tuple[Claim, float, float]]()
        oldest = time.monotonic() - self._settings.delivery_timeout_s
        while self._ready and len(self._tasks) < self._settings.delivery_concurrency:
            claim, now, round_started = self._ready.popleft()
            endpoint = claim.delivery.endpoint
            if round_started < oldest:
                count_down(self._held, endpoint)
                log_event(log, logging.DEBUG, "delivery.claim_let_go", delivery_id=claim.delivery.public_id)
                continue
            if self._in_flight_by_key.get(endpoint, 0) >= per_endpoint:
                waiting.append((claim, now, round_started))
                continue
            self.start(claim, now, round_started)
        if waiting:  # those skipped keep their place, ahead of the rest
            self._ready.extendleft(reversed(waiting))

    def _task_done(self, task: asyncio.Task[None]) -> None:
        super()._task_done(task)
        self._start_ready()

    def key_of(self, claim: Claim) -> str:
        return claim.delivery.endpoint

    def task_name(self, claim: Claim) -> str:
        return f"delivery-{claim.delivery.id}"

    async def process(self, claim: Claim, now: float, round_started: float) -> AttemptResult:
        """One attempt, judged."""
        # The attempt's time on the round's clock (an explicit clock in tests).
        at = now + (time.monotonic() - round_started)
        answer = await post_signed(self._http, self._settings, claim, at)
        return self._judge(claim.delivery, answer)

    def process_failed(self, claim: Claim) -> None:
        delivery_id = claim.delivery.public_id
        log_event(log, logging.ERROR, "delivery.error", delivery_id=delivery_id, exc_info=True)

    def slot_freed(self, claim: Claim) -> None:
        super().slot_freed(claim)
        count_down(self._held, claim.delivery.endpoint)

    def _judge(self, delivery: Delivery, answer: Answer) -> AttemptResult:
        """The answer's result for the delivery, counted by its endpoint's breaker and the metrics."""
        result = after_attempt(delivery, answer, self._policy)
        _log_attempt(delivery, result)
        attempt = answer.attempt
        if self.breakers.answered(delivery.endpoint, result, ended_at(attempt)):
            log_event(
                log,
                logging.WARNING,
                "endpoint.paused",
                endpoint=delivery.endpoint,
                failures=self._settings.circuit_failures,
            )
        if self._metrics is not None:
            self._metrics.delivery(result.status.value).inc()
            self._metrics.delivery_seconds.observe(attempt.latency_ms / 1000)
        return result
