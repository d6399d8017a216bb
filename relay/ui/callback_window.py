"""Callbacks of the last hour, by source, outcome and reason: differences of `relay_callbacks_total` (the
counter /metrics serves) between now and a snapshot taken about an hour ago."""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable

from relay.loops import Loop
from relay.metrics import Metrics

__all__ = ["WINDOW_S", "CallbackWindow", "Counts"]

WINDOW_S = 3600.0
# Snapshots are this far apart, so "the last hour" is the last 60 to 61 minutes.
_SNAPSHOT_EVERY_S = 60.0

Counts = dict[tuple[str, str, str], float]  # (source, outcome, reason) -> callbacks


class CallbackWindow(Loop):
    """Takes a snapshot of the callback counter each minute, keeping an hour's worth."""

    name = "ui-callback-window"

    def __init__(self, metrics: Metrics, clock: Callable[[], float] = time.time) -> None:
        super().__init__(_SNAPSHOT_EVERY_S, clock)
        self._metrics = metrics
        self._snapshots: deque[tuple[float, Counts]] = deque()

    def counts(self) -> Counts:
        """The counter's values now, since this process started."""
        found: Counts = {}
        for metric in self._metrics.callbacks.collect():
            for sample in metric.samples:
                if sample.name.endswith("_total"):
                    labels = sample.labels
                    found[(labels["source"], labels["outcome"], labels["reason"])] = sample.value
        return found

    async def run_once(self, now: float) -> int:
        self._snapshots.append((now, self.counts()))
        while self._snapshots and self._snapshots[0][0] < now - WINDOW_S - _SNAPSHOT_EVERY_S:
            self._snapshots.popleft()
        return 0

    def last_hour(self, now: float) -> tuple[float | None, Counts]:
        """Since when, and the callbacks since then: from the oldest snapshot of the last hour, or since
        this process started (None) when it has none."""
        base = next(((at, counts) for at, counts in self._snapshots if at >= now - WINDOW_S), None)
        current = self.counts()
        if base is None:
            return None, current
        since, before = base
        return since, {key: value - before.get(key, 0.0) for key, value in current.items()}
