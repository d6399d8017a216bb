"""The sweeper: no job hangs silently. Overdue jobs are reconciled with the provider or timed out."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping

import httpx

from relay.domain.jobs import extended_deadline
from relay.ingest import Ingestor
from relay.loops import Loop
from relay.models import Callback, Job
from relay.providers import Provider
from relay.settings import Settings
from relay.store import JobStore

__all__ = ["Sweeper"]

log = logging.getLogger(__name__)

# Jobs handled per round; a larger backlog is drained by the rounds that follow at once.
BATCH = 500
PURGE_BATCH = 500
_DAY_S = 86_400.0


class Sweeper(Loop):
    """Every `sweep_interval_s`: early reconciles, overdue jobs, then one retention batch."""

    name = "sweeper"

    def __init__(
        self,
        settings: Settings,
        store: JobStore,
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

    async def run_once(self, now: float) -> int:
        due = await self._store.reconcile_due(now, BATCH)
        overdue = await self._store.overdue_jobs(now, BATCH)
        overdue_keys = {(job.source, job.job_id) for job in overdue}
        early = [job for job in due if (job.source, job.job_id) not in overdue_keys]
        done = await asyncio.gather(
            *(self._early_reconcile(job, now) for job in early), *(self._settle(job, now) for job in overdue)
        )
        purged = await self._store.purge_finished(now - self._settings.retention_days * _DAY_S, PURGE_BATCH)
        return len(done) + purged

    async def _early_reconcile(self, job: Job, now: float) -> None:
        """Ask once, before the deadline, about a job whose callback is late."""
        answer = await self._ask(job)
        await self._store.clear_reconcile(job.source, job.job_id)
        if answer is not None and answer.status.final:
            await self._accept(job, answer, now)

    async def _settle(self, job: Job, now: float) -> None:
        """An overdue job: take the provider's final answer, extend while it runs, else time it out."""
        answer = await self._ask(job)
        if answer is not None and answer.status.final:
            await self._accept(job, answer, now)
            return
        provider = self._providers.get(job.source)
        if answer is not None and provider is not None:
            source = provider.source
            deadline = extended_deadline(job, now, source.timeout_s, source.max_deadline_s)
            if deadline is not None and await self._store.extend_deadline(job.source, job.job_id, deadline):
                return
        outcome = await self._store.time_out(job.source, job.job_id, now)
        if outcome is not None:
            log.info("job %s/%s timed out", job.source, job.job_id)
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
            log.warning("reconcile of %s/%s failed: %r", job.source, job.job_id, exc)
            return None

    async def _accept(self, job: Job, answer: Callback, now: float) -> None:
        provider = self._providers.get(job.source)
        if provider is not None:
            await self._ingestor.accept(provider.source, answer, now)
