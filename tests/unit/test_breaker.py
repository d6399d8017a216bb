"""Per-endpoint circuit breakers, driven with an explicit clock."""

from __future__ import annotations

from relay.breaker import Breakers
from relay.domain.outbox import after_attempt
from relay.outbox_models import AttemptResult
from tests.unit.test_outbox import NO_JITTER, answered, delivery

EP = "https://hooks.example.com:443"
NOW = 1_800_000_000.0


def test_failures_below_the_threshold_leave_the_endpoint_open_to_all() -> None:
    """Fewer failures in a row than the threshold change nothing."""
    breakers = Breakers(threshold=3, open_s=30, open_max_s=600)
    assert not breakers.failed(EP, NOW)
    assert not breakers.failed(EP, NOW)
    assert breakers.room(EP, NOW, 8) == 8
    assert breakers.limited(NOW, 8) == {}


def test_threshold_pauses_then_one_probe_then_success_closes() -> None:
    """Open for open_s, then half-open (room 1); a success closes it."""
    breakers = Breakers(threshold=3, open_s=30, open_max_s=600)
    for _ in range(2):
        breakers.failed(EP, NOW)
    assert breakers.failed(EP, NOW)
    assert breakers.room(EP, NOW + 29, 8) == 0
    assert breakers.is_open(EP, NOW + 29)
    assert breakers.limited(NOW + 29, 8) == {EP: 0}
    assert breakers.room(EP, NOW + 30, 8) == 1
    breakers.succeeded(EP)
    assert breakers.room(EP, NOW + 30, 8) == 8


def test_a_failed_probe_doubles_the_pause_up_to_the_cap() -> None:
    """30 s, 60 s, 120 s... never more than open_max_s."""
    breakers = Breakers(threshold=1, open_s=30, open_max_s=100)
    now = NOW
    for pause in (30, 60, 100, 100):
        assert breakers.failed(EP, now)
        assert breakers.is_open(EP, now + pause - 1)
        now += pause
        assert not breakers.is_open(EP, now)


def test_stragglers_failing_while_paused_do_not_lengthen_the_pause() -> None:
    """Attempts in flight when the breaker opened fail later; the pause stays as it was."""
    breakers = Breakers(threshold=1, open_s=30, open_max_s=600)
    breakers.failed(EP, NOW)
    assert not breakers.failed(EP, NOW + 10)
    assert breakers.room(EP, NOW + 30, 4) == 1


def outcome(code: int | None) -> AttemptResult:
    """What `after_attempt` makes of an answer with `code` (None: no answer) to a subscription's delivery."""
    return after_attempt(delivery(), answered(code), NO_JITTER)


def test_answers_count_as_success_failure_or_nothing() -> None:
    """A 2xx or 410 closes the breaker, a 429 counts for nothing, any other answer or none is a failure."""
    breakers = Breakers(threshold=2, open_s=30, open_max_s=600)
    assert not breakers.answered(EP, outcome(500), NOW)
    assert not breakers.answered(EP, outcome(429), NOW)
    assert breakers.answered(EP, outcome(None), NOW)
    assert breakers.is_open(EP, NOW)
    for code in (204, 410):
        breakers.answered(EP, outcome(302), NOW)
        breakers.answered(EP, outcome(code), NOW)
        assert breakers.room(EP, NOW + 30, 8) == 8
        # The answer closed it: one more failure is the first in a row again (were it nothing, the second).
        assert not breakers.answered(EP, outcome(500), NOW)
        breakers.succeeded(EP)
