"""Per-endpoint circuit breakers: an endpoint that keeps failing is paused, then probed with one attempt."""

from __future__ import annotations

from dataclasses import dataclass

from relay.outbox_models import AttemptResult, DeliveryStatus

__all__ = ["Breaker", "Breakers"]


@dataclass
class Breaker:
    """One endpoint's state: closed (failures below the threshold), open (paused), half-open (probing)."""

    failures: int = 0  # in a row
    open_until: float = 0.0
    pause_s: float = 0.0  # the current pause; doubles on each failed probe


class Breakers:
    """Circuit breakers by endpoint. Time is passed in, so tests drive them with an explicit clock."""

    def __init__(self, threshold: int, open_s: float, open_max_s: float) -> None:
        self.threshold = threshold
        self.open_s = open_s
        self.open_max_s = open_max_s
        self._by_endpoint: dict[str, Breaker] = {}

    def room(self, endpoint: str, now: float, limit: int) -> int:
        """How many attempts `endpoint` may have in flight now: `limit`, 1 to probe it, or 0 while paused."""
        breaker = self._by_endpoint.get(endpoint)
        if breaker is None or breaker.failures < self.threshold:
            return limit
        return 0 if now < breaker.open_until else 1

    def is_open(self, endpoint: str, now: float) -> bool:
        """Whether the endpoint is paused now."""
        return self.room(endpoint, now, 1) == 0

    def succeeded(self, endpoint: str) -> None:
        """An answer that counts as success closes the breaker."""
        self._by_endpoint.pop(endpoint, None)

    def failed(self, endpoint: str, now: float) -> bool:
        """Count a failure; answer whether it opened (or re-opened) the breaker."""
        breaker = self._by_endpoint.setdefault(endpoint, Breaker())
        breaker.failures += 1
        # Attempts already in flight when the breaker opened fail too: they do not lengthen the pause.
        if breaker.failures < self.threshold or now < breaker.open_until:
            return False
        breaker.pause_s = self.open_s if breaker.pause_s == 0 else min(breaker.pause_s * 2, self.open_max_s)
        breaker.open_until = now + breaker.pause_s
        return True

    def answered(self, endpoint: str, result: AttemptResult, now: float) -> bool:
        """Count an attempt's outcome, as `after_attempt` decided it; answer whether it opened the breaker.

        Delivered, or disabling its subscription (the subscriber answered, if only to say it is gone), closes
        it; a 429 counts for nothing (the endpoint is alive, and Retry-After slows it); anything else is a
        failure.
        """
        if result.status == DeliveryStatus.DELIVERED or result.disable_subscription is not None:
            self.succeeded(endpoint)
            return False
        return result.attempt.status_code != 429 and self.failed(endpoint, now)

    def limited(self, now: float, limit: int) -> dict[str, int]:
        """Endpoints whose breaker is not closed, with their room now (0 paused, 1 probing)."""
        return {
            ep: self.room(ep, now, limit)
            for ep, b in self._by_endpoint.items()
            if b.failures >= self.threshold
        }
