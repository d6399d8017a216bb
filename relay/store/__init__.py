"""The `Store` protocol: domain operations, one backend per database, chosen by URL scheme."""

from __future__ import annotations

from typing import Protocol

from relay.models import Callback, CallbackRecord, Event, IngestOutcome, Job, Registration, Status

__all__ = ["Store", "open_store"]


class Store(Protocol):
    """What relay needs from a database. Time is passed in (`now`), never read inside."""

    async def ingest(
        self,
        source: str,
        callback: Callback,
        now: float,
        timeout_s: float,
        reconcile_after_s: float | None = None,
    ) -> IngestOutcome:
        """Store a callback and apply it to its job in one transaction; dedupe by delivery ID."""
        ...

    async def register(
        self,
        registration: Registration,
        now: float,
        timeout_s: float,
        reconcile_after_s: float | None = None,
    ) -> tuple[Job, bool]:
        """Create the job or merge into it; answer the job and whether it was created."""
        ...

    async def get_job(self, source: str, job_id: str) -> Job | None:
        """The job, or None when it is not known."""
        ...

    async def list_jobs(
        self, *, source: str | None, status: Status | None, limit: int, before: int | None
    ) -> list[Job]:
        """Jobs newest first, optionally filtered, starting below row `before`."""
        ...

    async def list_callbacks(self, source: str, job_id: str) -> list[CallbackRecord]:
        """A job's accepted callbacks, oldest first."""
        ...

    async def list_events(self, source: str, job_id: str, after: int = 0) -> list[Event]:
        """A job's events with an id above `after`, in order."""
        ...

    async def count_jobs_by_status(self) -> dict[str, int]:
        """How many jobs are in each status."""
        ...

    async def overdue_jobs(self, now: float, limit: int) -> list[Job]:
        """Open jobs whose deadline is at or before `now`, most overdue first (index-only: cost ~ overdue)."""
        ...

    async def reconcile_due(self, now: float, limit: int) -> list[Job]:
        """Open jobs whose one early reconcile is due."""
        ...

    async def time_out(self, source: str, job_id: str, now: float) -> IngestOutcome | None:
        """Mark an open, overdue job timed_out (with its history entry and event); None if it no longer is."""
        ...

    async def extend_deadline(self, source: str, job_id: str, deadline: float) -> bool:
        """Move an open job's deadline; False when it is final."""
        ...

    async def clear_reconcile(self, source: str, job_id: str) -> None:
        """Forget a job's early reconcile."""
        ...

    async def purge_finished(self, before: float, limit: int) -> int:
        """Delete up to `limit` jobs finished before `before` with their history; answer how many."""
        ...

    async def ping(self) -> None:
        """Raise unless the database answers."""
        ...

    async def close(self) -> None:
        """Finish pending writes and release the database."""
        ...


async def open_store(url: str, *, synchronous: str = "full") -> Store:
    """Open the backend for `url` (`sqlite:///path`); backends are imported lazily."""
    if url.startswith("sqlite://"):
        from relay.store.sqlite import SQLiteStore

        return await SQLiteStore.open(
            url.removeprefix("sqlite://").removeprefix("/") or "relay.db", synchronous=synchronous
        )
    raise ValueError(f"database: unsupported URL scheme in {url!r} (sqlite:///path)")
