"""Retry timing for deliveries: a schedule of delays with jitter, and `Retry-After` parsing (pure)."""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from datetime import UTC
from email.utils import parsedate_to_datetime

__all__ = ["DEFAULT_SCHEDULE_S", "next_attempt_at", "retry_after_s"]

# Delays before retry 1, 2, ... after the first attempt: 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 10 h; then dead.
# (The "immediately" of the Standard Webhooks schedule is the first attempt, and the one quick retry after a
# fast connection failure.)
DEFAULT_SCHEDULE_S: tuple[float, ...] = (5.0, 300.0, 1800.0, 7200.0, 18000.0, 36000.0, 36000.0)


def next_attempt_at(
    attempt: int,
    now: float,
    schedule: Sequence[float],
    jitter: float,
    rand: Callable[[], float] = random.random,
) -> float | None:
    """When to retry after failed attempt `attempt` (1-based) at `now`; None once the schedule is spent.

    The delay is `schedule[attempt - 1]` scaled by a factor drawn uniformly from [1 - jitter, 1 + jitter], so
    the retries of many deliveries that failed together (an endpoint's outage) do not arrive together.
    """
    if attempt < 1:
        raise ValueError(f"attempt counts from 1, got {attempt}")
    if attempt > len(schedule):
        return None
    delay = schedule[attempt - 1] * (1.0 + jitter * (2.0 * rand() - 1.0))
    return now + max(0.0, delay)


def retry_after_s(value: str | None, now: float) -> float | None:
    """Seconds asked for by a `Retry-After` header (delta seconds or HTTP date); None if absent or bad."""
    if value is None:
        return None
    value = value.strip()
    if value.isascii() and value.isdigit():
        return float(value) if len(value) <= 10 else None
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:  # "-0000": an HTTP date is GMT anyway
        when = when.replace(tzinfo=UTC)
    return max(0.0, when.timestamp() - now)
