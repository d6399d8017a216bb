"""The gauges /metrics reads from the database when it is scraped: every relay sharing one PostgreSQL reports
the same backlog, whichever is asked. A database that does not answer in time leaves them out, never the
scrape: `relay_database_up` says so, and the in-process metrics are reported as usual."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from typing import TYPE_CHECKING

from prometheus_client.core import GaugeMetricFamily, Metric

from relay.logs import log_event
from relay.models import Status
from relay.store.backlog import COUNT_CAP, Backlog

if TYPE_CHECKING:
    from relay.metrics import Metrics
    from relay.store import Store

__all__ = ["PER_JOB", "READ_S", "DatabaseGauges", "read_database_gauges"]

log = logging.getLogger(__name__)

# The `subscription` label of jobs' own subscribers, together: one series however many URLs jobs name.
PER_JOB = "_per_job"
# How long a scrape waits for the database (Prometheus' own scrape timeout is 10 s by default).
READ_S = 2.0


class DatabaseGauges:
    """A Prometheus collector of the backlog the scrape under way read (`update`), or of its absence."""

    def __init__(self) -> None:
        self._backlog: Backlog | None = None
        self._now = 0.0

    def update(self, backlog: Backlog | None, now: float) -> None:
        self._backlog, self._now = backlog, now

    def collect(self) -> Iterable[Metric]:
        backlog = self._backlog
        up = GaugeMetricFamily(
            "relay_database_up",
            "1 when this scrape read the database's gauges; 0 when the database did not answer in time"
            " (relay_jobs, relay_deliveries_* and relay_jobs_overdue are then left out).",
            value=0 if backlog is None else 1,
        )
        capped = f"counted up to {COUNT_CAP}"
        by_subscription = ["subscription"]
        due = GaugeMetricFamily(
            "relay_deliveries_due",
            f"Deliveries whose attempt is due now (an expired claim included), by subscription ({PER_JOB}:"
            f" jobs' own subscribers); {capped}.",
            labels=by_subscription,
        )
        in_flight = GaugeMetricFamily(
            "relay_deliveries_in_flight",
            f"Deliveries claimed by a deliverer, their lease running, by subscription; {capped}.",
            labels=by_subscription,
        )
        dead = GaugeMetricFamily(
            "relay_deliveries_dead",
            f"Deliveries given up, by subscription; {capped}.",
            labels=by_subscription,
        )
        oldest = GaugeMetricFamily(
            "relay_deliveries_oldest_due_age_seconds",
            "How long the longest-waiting due delivery has been due; 0 when none is.",
        )
        overdue = GaugeMetricFamily(
            "relay_jobs_overdue",
            f"Open jobs past their deadline, not yet timed out or extended by the sweeper; {capped}.",
        )
        if backlog is not None:
            for target in backlog.targets:
                label = [PER_JOB if target.subscription_id is None else target.subscription_id]
                due.add_metric(label, target.due)
                in_flight.add_metric(label, target.in_flight)
                dead.add_metric(label, target.dead)
            since = backlog.oldest_due_at
            oldest.add_metric([], 0.0 if since is None else max(0.0, self._now - since))
            overdue.add_metric([], backlog.overdue_jobs)
        return [up, due, in_flight, dead, oldest, overdue]


async def read_database_gauges(metrics: Metrics, store: Store, now: float) -> None:
    """Read the gauges that come from the database into `metrics`, within `READ_S`; on any failure log it
    and leave them out (a scrape must answer while the database is briefly away)."""
    try:
        async with asyncio.timeout(READ_S):
            backlog = await store.backlog(now)
            counts = await store.count_jobs_by_status()
    except Exception as exc:
        error = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        log_event(log, logging.WARNING, "metrics.database_unavailable", error=error)
        metrics.database.update(None, now)
        metrics.jobs.clear()  # last scrape's counts would pass for current ones
        return
    metrics.database.update(backlog, now)
    for status in Status:
        metrics.jobs.labels(status.value).set(counts.get(status.value, 0))
