"""The archiver: claims due files under a lease, copies each from its origin into the blob store, records
what came of it, and deletes the bytes of purged jobs' files.

What a fetch's outcome means for its file (archived, retried when, failed) is decided by
`relay.domain.archive`; the `job.archived` event is made by the store when a job's last file settles.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping

import aiohttp

from relay.archive import ArchiveConfig, BlobStore, FetchedFile, FetchError, fetch_to_store
from relay.domain.archive import after_fetch
from relay.domain.outbox import endpoint_room
from relay.file_models import FileClaim, FileResult, FileStatus, blob_key
from relay.leased_work import LeasedWorkLoop
from relay.logs import log_event
from relay.metrics import Metrics
from relay.models import IngestOutcome, iso
from relay.providers import SourceConfig
from relay.store import ArchiveStore

__all__ = ["Archiver"]

log = logging.getLogger(__name__)

POLL_S = 1.0
# A claim lapses this long after its fetch's timeout (then another process fetches it): room for the
# result to be recorded and for clocks to disagree.
LEASE_MARGIN_S = 30.0
PURGE_BATCH = 100


class Archiver(LeasedWorkLoop[FileClaim, FileResult]):
    """Runs where the deliverer runs. At most `concurrency` fetches in flight, `host_concurrency` per host."""

    name = "archiver"

    def __init__(
        self,
        config: ArchiveConfig,
        sources: Mapping[str, SourceConfig],
        store: ArchiveStore,
        blobs: BlobStore,
        session: aiohttp.ClientSession,
        announce: Callable[[IngestOutcome], None],
        clock: Callable[[], float] = time.time,
        metrics: Metrics | None = None,
    ) -> None:
        super().__init__(POLL_S, clock)
        self._config = config
        self._sources = sources
        self._store = store
        self._blobs = blobs
        self._session = session
        self._announce = announce
        self._metrics = metrics
        self.lease_s = config.file_timeout_s + LEASE_MARGIN_S

    async def recover(self) -> None:
        """Make files a previous process left in flight due again, and remove their partial bytes."""
        try:
            recovered = await self._store.recover_files(self.clock())
            if recovered:
                log.info("%d file(s) being archived at the last stop are due again", recovered)
        except Exception:
            log.exception("recovering files in flight failed; their leases will expire instead")
        try:  # older than a lease: no live fetch is still writing it
            removed = await self._blobs.remove_stale(self.lease_s)
            if removed:
                log.info("removed %d partial file(s) left by an interrupted archive", removed)
        except Exception:
            log.exception("removing partial files failed")

    async def run_once(self, now: float) -> int:
        """Record ended fetches, delete purged files' bytes, claim what is due within the free room and start
        those; answers how many were claimed or deleted."""
        await self.record(self._take_settled(), now)
        deleted = await self._delete_purged(now)
        free = self._config.concurrency - len(self._tasks)
        self._filled = False
        if free <= 0:
            return deleted
        per_host = self._config.host_concurrency
        room, blocked = endpoint_room({}, self._in_flight_by_key, per_host)
        claims = await self._store.claim_files(
            now, limit=free, lease_s=self.lease_s, per_host=per_host, room=room, blocked=blocked
        )
        self._filled = len(claims) == free
        started = time.monotonic()
        for claim in claims:
            self.start(claim, now, started)
        return len(claims) + deleted

    async def record(self, settled: list[FileResult], now: float) -> None:
        if not settled:
            return
        try:
            outcomes = await self._store.finish_files(settled, now)
        except Exception:  # their leases expire and they are fetched again; the loop logs the traceback
            log.error("recording %d archive result(s) failed", len(settled))
            raise
        for outcome in outcomes:
            job = outcome.job
            log_event(log, logging.INFO, "job.archived", source=job.source, job_id=job.job_id)
            self._announce(outcome)

    async def _delete_purged(self, now: float) -> int:
        file_ids = await self._store.purged_files(now, PURGE_BATCH, self.lease_s)
        for file_id in file_ids:
            await self._blobs.delete(blob_key(file_id))
        if file_ids:
            await self._store.forget_files(file_ids)
        return len(file_ids)

    def key_of(self, claim: FileClaim) -> str:
        return claim.host

    def task_name(self, claim: FileClaim) -> str:
        return f"archive-{claim.id}"

    async def process(self, claim: FileClaim, now: float, round_started: float) -> FileResult:
        """One fetch, judged."""
        source = self._sources.get(claim.source)
        outcome: FetchedFile | FetchError
        try:
            outcome = await fetch_to_store(
                self._session,
                claim.source_url,
                self._blobs,
                blob_key(claim.id),
                max_bytes=self._config.max_file_bytes,
                timeout_s=self._config.file_timeout_s,
                allowed_hosts=source.archive_hosts if source is not None else (),
            )
        except FetchError as exc:
            outcome = exc
        ended = now + (time.monotonic() - round_started)
        result = after_fetch(claim, outcome, ended)
        self._judged(claim, result)
        return result

    def process_failed(self, claim: FileClaim) -> None:
        log_event(log, logging.ERROR, "archive.error", file_id=claim.id, exc_info=True)

    def _judged(self, claim: FileClaim, result: FileResult) -> None:
        """Count the outcome, and log a failure (at warning once it is final)."""
        outcome = {FileStatus.ARCHIVED: "archived", FileStatus.FAILED: "failed"}.get(
            result.status, "retrying"
        )
        if self._metrics is not None:
            self._metrics.archive_files.labels(outcome).inc()
        if outcome == "archived":
            return
        log_event(
            log,
            logging.WARNING if outcome == "failed" else logging.INFO,
            f"archive.{outcome}",
            file_id=claim.id,
            source=claim.source,
            host=claim.host,
            attempt=claim.attempts,
            error=result.error,
            next_attempt_at=iso(result.next_attempt_at),
        )
