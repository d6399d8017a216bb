"""Prometheus metrics, one registry per app so several apps can live in one process (tests)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, disable_created_metrics
from prometheus_client.registry import Collector

from relay.database_metrics import DatabaseGauges

__all__ = ["Metrics"]

# `_created` series double the output and no dashboard reads them.
disable_created_metrics()  # type: ignore[no-untyped-call]


class Metrics:
    def __init__(self, *collectors: Collector) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        for collector in collectors:  # read at scrape time (e.g. the providers' warning counts)
            self.registry.register(collector)
        self.callbacks = Counter(
            "relay_callbacks_total",
            "Callbacks received, by source, outcome (accepted, duplicate, rejected) and reason.",
            ["source", "outcome", "reason"],
            registry=self.registry,
        )
        self._callback_series: dict[tuple[str, str, str], Counter] = {}
        self._delivery_series: dict[str, Counter] = {}
        self.ingest_seconds = Histogram(
            "relay_ingest_seconds",
            "Time from a callback's body read to its answer (verify, parse, commit).",
            buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
            registry=self.registry,
        )
        self.waiters = Gauge("relay_waiters", "Long-poll waiters held now.", registry=self.registry)
        self.jobs = Gauge("relay_jobs", "Stored jobs by status.", ["status"], registry=self.registry)
        self.database = DatabaseGauges()  # the backlog, read from the database at each scrape
        self.registry.register(self.database)
        self.loop_success = Gauge(
            "relay_loop_last_success_timestamp_seconds",
            "When each background loop of this process (deliverer, sweeper, listener) last ended a round"
            " without an error, in unix seconds.",
            ["loop"],
            registry=self.registry,
        )
        self.deliveries = Counter(
            "relay_delivery_attempts_total",
            "Delivery attempts by the state they left the delivery in (delivered, retrying, dead).",
            ["outcome"],
            registry=self.registry,
        )
        self.delivery_seconds = Histogram(
            "relay_delivery_seconds",
            "Time from a delivery's POST to its answer (or failure).",
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0),
            registry=self.registry,
        )

        self.archive_files = Counter(
            "relay_archive_files_total",
            "Archive fetches by what they left the file as (archived, retrying, failed).",
            ["outcome"],
            registry=self.registry,
        )

    def delivery(self, status: str) -> Counter:
        """The `relay_deliveries_total` series of an attempt's outcome, looked up once (as `callback`)."""
        series = self._delivery_series.get(status)
        if series is None:
            series = self._delivery_series[status] = self.deliveries.labels(status)
        return series

    def callback(self, source: str, outcome: str, reason: str = "") -> Counter:
        """The `relay_callbacks_total` series of these labels, looked up once (`labels()` costs a lock and a
        tuple build on every call; this is on every callback's path)."""
        key = (source, outcome, reason)
        series = self._callback_series.get(key)
        if series is None:
            series = self._callback_series[key] = self.callbacks.labels(*key)
        return series
