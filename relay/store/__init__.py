"""The `Store` protocol: domain operations, one backend per database, chosen by URL scheme."""

from __future__ import annotations

import asyncio
from collections.abc import Collection, Mapping, Sequence
from typing import Protocol

from relay.file_models import ArchivedFile, FileClaim, FileResult
from relay.loops import Loop
from relay.models import Callback, CallbackRecord, Event, IngestOutcome, Job, Registration, Status
from relay.outbox_models import (
    AttemptResult,
    Claim,
    Delivery,
    DeliveryStatus,
    Subscription,
    SubscriptionChange,
)
from relay.store.backlog import Backlog
from relay.store.changes import Changes
from relay.store.urls import DatabaseUrl, parse_database_url, redacted_url

__all__ = [
    "ArchiveStore",
    "Backlog",
    "Changes",
    "DatabaseUrl",
    "JobStore",
    "LeaseStore",
    "OutboxStore",
    "Store",
    "migrate_database",
    "open_store",
    "parse_database_url",
    "redacted_url",
]


class JobStore(Protocol):
    """Jobs and their history: what ingest, the API's job reads and the sweeper need. Time is passed in
    (`now`), never read inside."""

    async def ingest(
        self,
        source: str,
        callback: Callback,
        now: float,
        timeout_s: float,
        reconcile_after_s: float | None = None,
        files: Sequence[ArchivedFile] = (),
    ) -> IngestOutcome:
        """Store a callback and apply it to its job in one transaction; dedupe by delivery ID. When it makes
        the job final, `files` (its result's, relay/domain/archive.py) are queued for archiving, in the same
        transaction, and the job and its event carry them."""
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

    async def count_jobs_capped(self) -> dict[str, int]:
        """How many jobs are in each status, each count reading at most JOB_COUNT_CAP + 1 index entries
        (relay/store/job_counts.py): what a page may ask for on every view."""
        ...

    async def overdue_jobs(self, now: float, limit: int) -> list[Job]:
        """Open jobs whose deadline is at or before `now`, most overdue first; asked every sweep, it should
        cost what is overdue, not what is open."""
        ...

    async def reconcile_due(self, now: float, limit: int) -> list[Job]:
        """Open jobs whose one early reconcile is due."""
        ...

    async def time_out(self, source: str, job_id: str, now: float) -> IngestOutcome | None:
        """Mark an open, overdue job timed_out (with its history entry and event); None if it no longer is."""
        ...

    async def time_out_many(self, jobs: Sequence[Job], now: float) -> list[IngestOutcome | None]:
        """`time_out` of each job, all in one transaction: each answer as `time_out`'s, in the order of `jobs`
        (as `overdue_jobs` read them; each is read again, by its row, and decided on what it is now; a job
        listed twice is timed out once)."""
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


class LeaseStore(Protocol):
    """Leases: one holder at a time of a named task across the processes sharing a database (the sweeper's
    round). A holder renews its lease before it lapses; one that dies loses it at `expires_at`."""

    async def take_lease(self, name: str, holder: str, now: float, ttl_s: float) -> bool:
        """Take the lease `name` until `now + ttl_s` when it is free, expired or `holder`'s own (a renewal),
        in one conditional statement; False while another holder's lease runs."""
        ...

    async def release_lease(self, name: str, holder: str) -> None:
        """Give the lease up if `holder` has it, so another takes it at once. `close` releases every lease
        taken through this store that was not released."""
        ...


class OutboxStore(Protocol):
    """Subscriptions and the deliveries queued for them: what the deliverer and its API need."""

    async def create_subscription(
        self, url: str, source: str | None, events: Sequence[str] | None, secret: str, now: float
    ) -> Subscription:
        """Store a subscription; it gets the events made from now on."""
        ...

    async def list_subscriptions(self) -> list[Subscription]:
        """Every subscription, oldest first."""
        ...

    async def get_subscription(self, sub_id: str) -> Subscription | None:
        """The subscription, or None."""
        ...

    async def delete_subscription(self, sub_id: str, now: float) -> bool:
        """Remove a subscription and give up its unsent deliveries; False when there was none."""
        ...

    async def rotate_subscription_secret(
        self, sub_id: str, secret: str, now: float, overlap_s: float
    ) -> Subscription | None:
        """Set a new secret, keeping the current one signing for `overlap_s`; None when unknown."""
        ...

    async def update_subscription(
        self, sub_id: str, change: SubscriptionChange, now: float
    ) -> Subscription | None:
        """Apply `change` in one transaction; None when unknown. A new URL moves the deliveries not yet
        delivered with it; `enabled` False disables it as a 410 does (its unsent deliveries given up), True
        clears `disabled_at` and `disabled_reason` (dead deliveries stay dead until retried)."""
        ...

    async def claim_deliveries(
        self,
        now: float,
        *,
        limit: int,
        lease_s: float,
        per_endpoint: int,
        room: Mapping[str, int],
        blocked: Collection[str],
        finished: Sequence[AttemptResult] = (),
    ) -> list[Claim]:
        """Record `finished` attempts (as `finish_deliveries` does), then take due deliveries under a lease,
        in order per job and target, within per-endpoint room; one transaction: the claim sees the records."""
        ...

    async def finish_deliveries(self, results: Sequence[AttemptResult]) -> list[bool]:
        """Record attempts and their deliveries' new states; False for each whose claim was lost."""
        ...

    async def list_deliveries(
        self,
        *,
        status: DeliveryStatus | None = None,
        source: str | None = None,
        job_id: str | None = None,
        subscription_id: str | None = None,
        limit: int = 50,
        before: int | None = None,
    ) -> list[Delivery]:
        """Deliveries newest first, each with its attempts, starting below id `before`."""
        ...

    async def get_delivery(self, delivery_id: int) -> Delivery | None:
        """One delivery with its attempts."""
        ...

    async def retry_delivery(self, delivery_id: int, now: float) -> Delivery | None:
        """Queue a delivery again now with a fresh schedule; None when unknown or in flight."""
        ...

    async def recover_deliveries(self, now: float) -> int:
        """Make deliveries in flight in a process that is gone due again; answer how many."""
        ...


class ArchiveStore(Protocol):
    """Archived files: the durable queue the archiver works through, and reads for `GET /v1/files/{id}`."""

    async def claim_files(
        self,
        now: float,
        *,
        limit: int,
        lease_s: float,
        per_host: int,
        room: Mapping[str, int],
        blocked: Collection[str],
    ) -> list[FileClaim]:
        """Take due files for one fetch each under a lease of `lease_s`, at most `room[host]` (default
        `per_host`) per host and none of `blocked` hosts."""
        ...

    async def finish_files(self, results: Sequence[FileResult], now: float) -> list[IngestOutcome]:
        """Record fetch results whose claims still hold, in one transaction with the `job.archived` event of
        each job whose files are now all settled (made once per job); answer those events' outcomes."""
        ...

    async def recover_files(self, now: float) -> int:
        """Make files in flight in a process that is gone due again; answer how many."""
        ...

    async def get_file(self, file_id: str) -> tuple[ArchivedFile, str, str] | None:
        """The file with its job's source and job ID; None when unknown or its job is purged."""
        ...

    async def purged_files(self, now: float, limit: int, lease_s: float) -> list[str]:
        """Ids of purged jobs' files whose bytes are due for deletion, held for `lease_s`."""
        ...

    async def forget_files(self, file_ids: Sequence[str]) -> None:
        """Delete the rows of purged files whose bytes are gone."""
        ...


class Store(JobStore, OutboxStore, LeaseStore, ArchiveStore, Protocol):
    """A database: both halves, opened and closed as one, with one health check."""

    # Whether other processes may commit changes to this database (then waiters re-read it now and then).
    shared: bool

    def change_feed(self, changes: Changes) -> Loop | None:
        """A loop that tells this process, through `changes`, of what other processes commit; None when
        nothing can be heard (a database of one process, or notifications turned off)."""
        ...

    async def backlog(self, now: float) -> Backlog:
        """What /metrics alerts on, in one statement whose cost is bounded whatever the tables hold: each
        subscription's deliveries due, in flight and dead, the oldest due delivery, overdue open jobs."""
        ...

    async def ping(self) -> None:
        """Raise unless the database takes reads and writes now, without waiting for a lock:
        ServiceUnavailable whose code names the cause (`database_busy`, `writes_failing`, `database_down`),
        or any other error when it does not answer at all."""
        ...

    async def close(self) -> None:
        """Finish pending writes and release the database."""
        ...


async def open_store(url: str) -> Store:
    """Open the backend for `url` (its options in the query, e.g. `sqlite:///relay.db?synchronous=normal`);
    backends are imported lazily."""
    database = parse_database_url(url)
    if database.scheme == "postgresql":
        from relay.store.postgres.store import PostgresStore

        options = database.options
        pool = {name: int(value) for name, value in options.items() if name.startswith("pool_")}
        return await PostgresStore.open(database.path, listen=options.get("listen", "on") == "on", **pool)
    from relay.store.sqlite import SQLiteStore

    return await SQLiteStore.open(database.path, synchronous=database.options.get("synchronous", "full"))


def migrate_database(url: str) -> list[int]:
    """Apply the pending schema migrations to the database at `url`; answer the numbers applied, in order."""
    database = parse_database_url(url)
    if database.scheme == "postgresql":
        from relay.store.postgres.migrations import migrate_url

        return asyncio.run(migrate_url(database.path))
    from relay.store.sqlite import migrate_file

    return migrate_file(database.path, database.options.get("synchronous", "full"))
