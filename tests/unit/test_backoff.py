"""The retry schedule and Retry-After parsing."""

from __future__ import annotations

from email.utils import formatdate

import pytest
from hypothesis import given
from hypothesis import strategies as st

from relay.backoff import DEFAULT_SCHEDULE_S, next_attempt_at, retry_after_s

NOW = 1_800_000_000.0


def test_default_schedule_is_the_documented_one() -> None:
    """5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 10 h after the first attempt, then dead."""
    assert DEFAULT_SCHEDULE_S == (5, 300, 1800, 2 * 3600, 5 * 3600, 10 * 3600, 10 * 3600)


def test_without_jitter_each_retry_waits_its_scheduled_delay() -> None:
    """Attempt n failing at `now` is retried `schedule[n-1]` later."""
    for attempt, delay in enumerate(DEFAULT_SCHEDULE_S, start=1):
        assert next_attempt_at(attempt, NOW, DEFAULT_SCHEDULE_S, 0.0) == NOW + delay


def test_after_the_schedule_the_delivery_is_dead() -> None:
    """No retry after the last scheduled one; an empty schedule means one attempt only."""
    assert next_attempt_at(len(DEFAULT_SCHEDULE_S) + 1, NOW, DEFAULT_SCHEDULE_S, 0.1) is None
    assert next_attempt_at(1, NOW, (), 0.1) is None


def test_attempts_count_from_one() -> None:
    """Attempt 0 is a caller's mistake."""
    with pytest.raises(ValueError):
        next_attempt_at(0, NOW, DEFAULT_SCHEDULE_S, 0.0)


def test_jitter_extremes() -> None:
    """The random draw spans [1 - jitter, 1 + jitter] times the delay."""
    assert next_attempt_at(2, NOW, DEFAULT_SCHEDULE_S, 0.2, rand=lambda: 0.0) == pytest.approx(NOW + 240)
    assert next_attempt_at(2, NOW, DEFAULT_SCHEDULE_S, 0.2, rand=lambda: 1.0) == pytest.approx(NOW + 360)


@given(
    schedule=st.lists(st.floats(0, 1e6), min_size=1, max_size=12),
    jitter=st.floats(0, 0.99),
    draw=st.floats(0, 1),
    data=st.data(),
)
def test_jittered_delay_stays_within_bounds(
    schedule: list[float], jitter: float, draw: float, data: st.DataObject
) -> None:
    """Whatever the schedule and draw, a retry is never before now and within the jitter band."""
    attempt = data.draw(st.integers(1, len(schedule)))
    at = next_attempt_at(attempt, NOW, schedule, jitter, rand=lambda: draw)
    assert at is not None
    delay = schedule[attempt - 1]
    assert NOW <= at
    assert NOW + delay * (1 - jitter) - 1e-6 <= at <= NOW + delay * (1 + jitter) + 1e-6


@pytest.mark.parametrize(
    ("header", "expected"),
    [("120", 120.0), (" 7 ", 7.0), ("0", 0.0), (None, None), ("soon", None), ("-5", None), ("1" * 20, None)],
)
def test_retry_after_seconds(header: str | None, expected: float | None) -> None:
    """Delta seconds are read; anything else that is not a date is ignored."""
    assert retry_after_s(header, NOW) == expected


def test_retry_after_http_date() -> None:
    """An HTTP date is turned into seconds from now; one in the past is 0."""
    assert retry_after_s(formatdate(NOW + 90, usegmt=True), NOW) == pytest.approx(90)
    assert retry_after_s(formatdate(NOW - 90, usegmt=True), NOW) == 0.0
    assert retry_after_s("Wed, 21 Oct 2015 07:28:00 -0000", NOW) == 0.0
