"""The deliverer: claims due deliveries under a lease, POSTs them signed, records attempts.

What an answer means for its delivery (delivered, retried when, dead) is decided by `relay.domain.outbox`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

import httpx

from relay import signing
from relay.breaker import Breakers
from relay.domain.outbox import Answer, RetryPolicy, after_attempt, ended_at, endpoint_room
from relay.loops import Loop
from relay.metrics import Metrics
from relay.outbox_models import AttemptResult, Claim, Delivery, DeliveryAttempt
from relay.settings import Settings
from relay.ssrf import DestinationBlocked, guarded_transport
from relay.store import OutboxStore

__all__ = ["Deliverer", "delivery_client"]

log = logging.getLogger(__name__)

RESPONSE_HEAD_BYTES = 1024  # how much of each answer is kept with the attempt
LEASE_MARGIN_S = 30.0  # a lease outlives the attempt's own timeout by this much
USER_AGENT = "relay-webhooks/0.1"


def delivery_client(settings: Settings) -> httpx.AsyncClient:
    """The one HTTP client all deliveries share: pooled, bounded, no redirects, guarded destinations."""
    limits = httpx.Limits(
        max_connections=settings.delivery_concurrency, max_keepalive_connections=settings.delivery_concurrency
    )
    return httpx.AsyncClient(
        transport=guarded_transport(limits, allow_private=settings.allow_private_destinations),
        timeout=httpx.Timeout(settings.delivery_timeout_s, connect=settings.delivery_connect_timeout_s),
        follow_redirects=False,
        trust_env=False,
        headers={"user-agent": USER_AGENT},
    )


class Deliverer(Loop):
    """Runs in the serve process. Each round claims what is due and starts one task per attempt.

    Isolation: at most `endpoint_concurrency` attempts are in flight per endpoint and `delivery_concurrency`
    in all, and an endpoint whose circuit breaker is open is not claimed for, so an endpoint that hangs or
    fails holds a few slots, never the healthy endpoints' deliveries.
    """

    name = "deliverer"

    def __init__(
        self,
        settings: Settings,
        store: OutboxStore,
        http: httpx.AsyncClient,
        clock: Callable[[], float] = time.time,
        metrics: Metrics | None = None,
    ) -> None:
        super().__init__(settings.delivery_poll_s, clock)
        self._settings = settings
        self._policy = RetryPolicy.from_settings(settings)
        self._store = store
        self._http = http
        self._metrics = metrics
        self.breakers = Breakers(
            settings.circuit_failures, settings.circuit_open_s, settings.circuit_open_max_s
        )
        self._in_flight: dict[str, int] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._filled = False  # the last claim took all the room it was given: more may be due
        self._settled: list[AttemptResult] = []  # attempts ended, waiting for the next round to record them
        self.lease_s = settings.delivery_timeout_s + LEASE_MARGIN_S

    @property
    def in_flight(self) -> int:
        """Attempts running now."""
        return len(self._tasks)

    async def run(self, stop: asyncio.Event) -> None:
        """Recover deliveries a previous process left in flight, then deliver until stopped."""
        try:
            recovered = await self._store.recover_deliveries(self.clock())
            if recovered:
                log.info("%d delivery(ies) in flight at the last stop are due again", recovered)
        except Exception:
            log.exception("recovering deliveries in flight failed; their leases will expire instead")
        try:
            await super().run(stop)
            await self.drain()  # the app bounds this by its grace period, then cancels us
        finally:
            for task in self._tasks:
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)

    def go_again(self, done: int) -> bool:
        # A claim that got less than the room it asked for took everything claimable: another round finds
        # nothing until an attempt ends or a delivery is queued, and both wake the loop.
        return self._filled

    async def drain(self) -> None:
        """Wait until every attempt started so far has finished and been recorded."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)
        await self._record(self._take_settled())

    def _take_settled(self) -> list[AttemptResult]:
        settled, self._settled = self._settled, []
        return settled

    async def _record(self, settled: list[AttemptResult]) -> None:
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
        free = self._settings.delivery_concurrency - len(self._tasks)
        self._filled = False
        settled = self._take_settled()
        if free <= 0:
            await self._record(settled)
            return 0
        per_endpoint = self._settings.endpoint_concurrency
        room, blocked = endpoint_room(self.breakers.limited(now, per_endpoint), self._in_flight, per_endpoint)
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
            self._in_flight[endpoint] = self._in_flight.get(endpoint, 0) + 1
            task = asyncio.create_task(
                self._deliver(claim, now, started), name=f"delivery-{claim.delivery.id}"
            )
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        return len(claims)

    async def _deliver(self, claim: Claim, now: float, round_started: float) -> None:
        """One attempt, judged; the loop's next round records it. The slot is given back whatever happens."""
        delivery = claim.delivery
        try:
            # The attempt's time on the round's clock (an explicit clock in tests).
            at = now + (time.monotonic() - round_started)
            answer = await self._post(claim, at)
            self._settled.append(self._judge(delivery, answer))
        except Exception:  # the lease expires and the delivery is tried again
            log.exception("delivery %s failed unexpectedly", delivery.public_id)
        finally:
            left = self._in_flight[delivery.endpoint] - 1
            if left:
                self._in_flight[delivery.endpoint] = left
            else:
                del self._in_flight[delivery.endpoint]
            self.wake()

    def _signature(self, claim: Claim, timestamp: int) -> str | None:
        secrets = claim.secrets or ((self._settings.signing_secret,) if self._settings.signing_secret else ())
        if not secrets:
            return None
        keys = [signing.decode_secret(secret) for secret in secrets]
        return " ".join(signing.sign(key, claim.delivery.event_id, timestamp, claim.body) for key in keys)

    async def _post(self, claim: Claim, at: float) -> Answer:
        """POST once, bounded by `delivery_timeout_s` as a whole; network failures are answers, not raised."""
        delivery = claim.delivery
        timestamp = int(at)
        signature = self._signature(claim, timestamp)
        if signature is None:
            unsigned = "not sent: per-job subscribers are signed with signing_secret, which is not configured"
            return Answer(DeliveryAttempt(at, None, 0.0, unsigned))
        headers = {
            "content-type": "application/json",
            "webhook-id": delivery.event_id,
            "webhook-timestamp": str(timestamp),
            "webhook-signature": signature,
        }
        timeout = self._settings.delivery_timeout_s
        status: int | None = None
        retry_after: str | None = None
        head = b""
        error: str | None = None
        connection_failed = False
        started = time.monotonic()
        try:
            async with (
                asyncio.timeout(timeout),
                self._http.stream("POST", delivery.url, content=claim.body, headers=headers) as response,
            ):
                status = response.status_code
                retry_after = response.headers.get("retry-after")
                if response.is_redirect:
                    error = f"redirect to {response.headers.get('location')!r} not followed"
                async for chunk in response.aiter_bytes():
                    head += chunk
                    if len(head) >= RESPONSE_HEAD_BYTES:
                        break  # the rest is not read; the connection is closed rather than reused
        except TimeoutError:  # after a status line, the answer counts; only its body was cut off
            error = (
                f"no answer within {timeout:g} s" if status is None else "the body was cut off by the timeout"
            )
        except httpx.ConnectError as exc:
            blocked = isinstance(exc.__cause__, DestinationBlocked)
            connection_failed = not blocked
            error = f"connection failed: {exc}" if not blocked else f"destination refused: {exc}"
        except httpx.HTTPError as exc:
            error = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        latency_ms = (time.monotonic() - started) * 1000
        attempt = DeliveryAttempt(at, status, latency_ms, error, head[:RESPONSE_HEAD_BYTES])
        return Answer(attempt, retry_after, connection_failed)

    def _judge(self, delivery: Delivery, answer: Answer) -> AttemptResult:
        """The answer's result for the delivery, counted by its endpoint's breaker and the metrics."""
        result = after_attempt(delivery, answer, self._policy)
        attempt = answer.attempt
        if self.breakers.answered(delivery.endpoint, result, ended_at(attempt)):
            log.warning(
                "endpoint %s failed %d times in a row: paused",
                delivery.endpoint,
                self._settings.circuit_failures,
            )
        if self._metrics is not None:
            self._metrics.deliveries.labels(result.status.value).inc()
            self._metrics.delivery_seconds.observe(attempt.latency_ms / 1000)
        return result
