"""The inbound use case: verify -> parse -> store.ingest -> announce (hub and listeners)."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping

from relay.domain.archive import files_to_archive
from relay.errors import NotFound, Unauthorized
from relay.file_models import ArchivedFile
from relay.hub import Hub
from relay.logs import log_event
from relay.models import Callback, IngestOutcome
from relay.providers import Provider, SourceConfig
from relay.store import JobStore
from relay.tokens import Tokens

__all__ = ["Ingestor"]

log = logging.getLogger(__name__)


class Ingestor:
    """Takes one provider callback; answers only after it is committed."""

    def __init__(
        self,
        providers: Mapping[str, Provider],
        store: JobStore,
        hub: Hub,
        tokens: Tokens,
        clock: Callable[[], float] = time.time,
        base_url: str = "",
    ) -> None:
        self._providers = providers
        self._base_url = base_url  # archived files' URLs are made under it
        self._store = store
        self._hub = hub
        self._tokens = tokens
        self._clock = clock
        # Called after a committed job change that queued deliveries (the deliverer's wake-up hint).
        self.listeners: list[Callable[[], None]] = []

    async def ingest(
        self, source: str, headers: Mapping[str, str], body: bytes, token: str | None = None
    ) -> IngestOutcome:
        """Verify and store one callback, then wake whoever waits on its job."""
        started = time.perf_counter()
        provider = self._providers.get(source)
        if provider is None:
            raise NotFound(f"no source named {source!r} is configured", "unknown_source")
        now = self._clock()
        if provider.signed:
            if token is not None:
                raise NotFound(f"source {source!r} is signed: post to /hooks/{source}", "unknown_source")
            await provider.verify(headers, body, now)
        elif token is None:
            raise Unauthorized(f"source {source!r} signs nothing: its URL ends in a token", "missing_token")
        elif not self._tokens.hook_token_valid(provider.source.hook_token_subject, token):
            raise Unauthorized(f"the URL token is not the current one of source {source!r}", "bad_token")
        callback = provider.parse(headers, body)
        outcome = await self.accept(provider.source, callback, now)
        _log_callback(source, callback, outcome, started)
        return outcome

    async def accept(self, source: SourceConfig, callback: Callback, now: float) -> IngestOutcome:
        """Store a callback already known to be authentic (verified, or the provider's own status answer)."""
        files: tuple[ArchivedFile, ...] = ()
        if source.archive and callback.status.final:
            files = files_to_archive(callback.result, source.archive_hosts, self._base_url)
        outcome = await self._store.ingest(
            source.name, callback, now, source.timeout_s, source.reconcile_after_s, files
        )
        if outcome.changed:
            self.announce(outcome)
        return outcome

    def announce(self, outcome: IngestOutcome) -> None:
        """Tell waiters and streams that a committed change happened to a job, and the listeners when it
        queued deliveries (most changes queue none: no subscriber wants them)."""
        job = outcome.job
        self._hub.publish((job.source, job.job_id), job)
        if outcome.queued:
            for listener in self.listeners:
                listener()


def _log_callback(source: str, callback: Callback, outcome: IngestOutcome, started: float) -> None:
    """`callback.accepted` at debug (one a request: the metrics count them), `callback.duplicate` at info,
    and `job.late` when a result came after the job had timed out; `latency_ms` is verify + store."""
    job = outcome.job
    level, event = (
        (logging.INFO, "callback.duplicate") if outcome.duplicate else (logging.DEBUG, "callback.accepted")
    )
    if log.isEnabledFor(level):
        log_event(
            log,
            level,
            event,
            source=source,
            job_id=job.job_id,
            webhook_id=callback.delivery_id,
            status=job.status.value,
            latency_ms=round((time.perf_counter() - started) * 1000, 2),
        )
    if job.late and outcome.changed:
        log_event(log, logging.WARNING, "job.late", source=source, job_id=job.job_id, status=job.status.value)
