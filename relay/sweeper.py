"""The sweeper: no job hangs silently. Overdue jobs are reconciled with the provider or timed out.

One sweeper at a time across the relays sharing a database: a round starts by taking the `sweeper` lease
(relay/store/leases.py), renewed at most once a sweep interval, and is skipped while another relay holds it.
The lease lasts `LEASE_ROUNDS` sweep intervals, so a holder that dies is replaced within that; one that
stops gives it up (the store releases it on close), and another takes over at its next round. The lease
saves work, it does not keep jobs safe: two sweepers at once still end each job once (the stores'
time-outs re-read each job under lock and decide on what it is then).
"""

from __future__ import annotations

import asyncio
import logging
import math
import os
import secrets
import socket
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Protocol

import httpx

from relay.domain.jobs import extended_deadline
from relay.ingest import Ingestor
from relay.logs import log_event
from relay.loops import Loop
from relay.models import Callback, Job, iso
from relay.providers import Provider
from relay.settings import Settings
from relay.store import JobStore, LeaseStore

__all__ = ["LEASE", "LEASE_ROUNDS", "Sweeper", "SweeperStore", "holder_id"]

log = logging.getLogger(__name__)

# Jobs handled per round; a larger backlog is drained by the rounds that follow at once.
BATCH = 500
PURGE_BATCH = 500
_DAY_S = 86_400.0
LEASE = "sweeper"
# The lease's ttl in sweep intervals: a holder renews it every interval, so one late round does not lose it.
LEASE_ROUNDS = 3


class SweeperStore(JobStore, LeaseStore, Protocol):
    """What the sweeper needs of a store: the jobs, and the lease that makes it the only sweeper."""


def holder_id() -> str:
    """A lease holder's name: host and pid say which relay has it; the random part tells apart two sweepers
    in one process, and a restarted relay that got the same pid."""
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"


class Sweeper(Loop):
    """Every `sweep_interval_s`, with the lease: early reconciles, overdue jobs, then one retention batch."""

    name = "sweeper"

    def __init__(
        self,
        settings: Settings,
        store: SweeperStore,
        providers: Mapping[str, Provider],
        ingestor: Ingestor,
        http: httpx.AsyncClient,
        clock: Callable[[], float] = time.time,
    ) -> None:
        super().__init__(settings.sweep_interval_s, clock)
        self._settings = settings
        self._store = store
        self._providers = providers
        self._ingestor = ingestor
        self._http = http
        # Bounds the calls in flight to providers, so a slow one cannot pile up connections.
        self._asking = asyncio.Semaphore(settings.reconcile_concurrency)
        self.holder = holder_id()
        self.lease_ttl_s = LEASE_ROUNDS * settings.sweep_interval_s
        self._renew_at = -math.inf  # until then the lease held has at least LEASE_ROUNDS - 1 intervals left

    async def run_once(self, now: float) -> int:
        if not await self._hold_lease(now):
            return 0  # another relay sweeps; this one tries again next interval
        due = await self._store.reconcile_due(now, BATCH)
        overdue = await self._store.overdue_jobs(now, BATCH)
        overdue_keys = {(job.source, job.job_id) for job in overdue}
        early = [job for job in due if (job.source, job.job_id) not in overdue_keys]
        # Jobs whose provider cannot be asked are timed out at once, together, while the others are asked.
        askable = [job for job in overdue if self._askable(job)]
        unaskable = [job for job in overdue if not self._askable(job)]
        _, _, unanswered = await asyncio.gather(
            asyncio.gather(*(self._early_reconcile(job, now) for job in early)),
            self._time_out(unaskable, now),
            asyncio.gather(*(self._settle(job, now) for job in askable)),
        )
        await self._time_out([job for job in unanswered if job is not None], now)
        purged = await self._store.purge_finished(now - self._settings.retention_days * _DAY_S, PURGE_BATCH)
        return len(early) + len(overdue) + purged

    async def _hold_lease(self, now: float) -> bool:
        """Whether this sweeper holds the lease, taking or renewing it at most once an interval (rounds that
        drain a backlog follow each other at once)."""
        if now < self._renew_at:
            return True
        taken = await self._store.take_lease(LEASE, self.holder, now, self.lease_ttl_s)
        self._renew_at = now + self.interval_s if taken else -math.inf
        return taken

    def _askable(self, job: Job) -> bool:
        """Whether the job's provider has a status API to ask (every `fetch_status` answers None without)."""
        provider = self._providers.get(job.source)
        return provider is not None and provider.api is not None

    async def _early_reconcile(self, job: Job, now: float) -> None:
        """Ask once, before the deadline, about a job whose callback is late."""
        answer = await self._ask(job)
        await self._store.clear_reconcile(job.source, job.job_id)
        if answer is not None and answer.status.final:
            await self._accept(job, answer, now)

    async def _settle(self, job: Job, now: float) -> Job | None:
        """An overdue job: take the provider's final answer, extend while it runs; else answer the job, to be
        timed out."""
        answer = await self._ask(job)
        if answer is not None and answer.status.final:
            await self._accept(job, answer, now)
            return None
        provider = self._providers.get(job.source)
        if answer is not None and provider is not None:
            source = provider.source
            deadline = extended_deadline(job, now, source.timeout_s, source.max_deadline_s)
            if deadline is not None and await self._store.extend_deadline(job.source, job.job_id, deadline):
                log_event(
                    log,
                    logging.INFO,
                    "job.deadline_extended",
                    source=job.source,
                    job_id=job.job_id,
                    status=answer.status.value,
                    deadline=iso(deadline),
                )
                return None
        return job

    async def _time_out(self, jobs: Sequence[Job], now: float) -> None:
        """Time the jobs out in one transaction; those a callback ended meanwhile are left as they are."""
        if not jobs:
            return
        outcomes = await self._store.time_out_many(jobs, now)
        for outcome in outcomes:
            if outcome is not None:
                job = outcome.job
                log_event(log, logging.WARNING, "job.timed_out", source=job.source, job_id=job.job_id)
                self._ingestor.announce(outcome)

    async def _ask(self, job: Job) -> Callback | None:
        """The provider's answer, or None (no status endpoint, no token, an error or a timeout)."""
        provider = self._providers.get(job.source)
        if provider is None:
            return None
        try:
            async with self._asking, asyncio.timeout(self._settings.reconcile_timeout_s):
                return await provider.fetch_status(job, self._http)
        except Exception as exc:  # a provider that errs is no answer; the job still gets its ending
            error = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
            log_event(
                log,
                logging.WARNING,
                "job.reconcile_failed",
                source=job.source,
                job_id=job.job_id,
                error=error,
            )
            return None

    async def _accept(self, job: Job, answer: Callback, now: float) -> None:
        provider = self._providers.get(job.source)
        if provider is not None:
            outcome = await self._ingestor.accept(provider.source, answer, now)
            if outcome.changed:
                log_event(
                    log,
                    logging.INFO,
                    "job.reconciled",
                    source=job.source,
                    job_id=job.job_id,
                    status=outcome.job.status.value,
                )
