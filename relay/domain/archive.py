"""The archiving rules: which of a final result's URLs become files, what a fetch does to its file, and when
a job's files are all settled (its `job.archived` event). Every backend and the archiver call these; no I/O.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable, Sequence
from typing import Any
from urllib.parse import urlsplit

from relay.archive.fetch import FetchedFile, FetchError
from relay.archive.hosts import file_urls
from relay.backoff import next_attempt_at
from relay.file_models import ArchivedFile, FileClaim, FileResult, FileStatus
from relay.models import Callback, Job

__all__ = [
    "ARCHIVE_ENTRY_ID",
    "MAX_FILES_PER_RESULT",
    "RETRY_SCHEDULE_S",
    "after_fetch",
    "all_settled",
    "archive_entry",
    "file_url",
    "files_to_archive",
    "host_of",
    "new_file_id",
    "set_files",
    "with_files",
]

# A result naming more URLs than this has its first ones archived: one callback cannot queue unbounded work.
MAX_FILES_PER_RESULT = 100
# Retries of a retryable failure: within about 20 minutes, as providers' URLs expire after an hour or less.
RETRY_SCHEDULE_S: tuple[float, ...] = (5.0, 30.0, 120.0, 300.0, 900.0)
RETRY_JITTER = 0.1
# The history entry of a job's `job.archived` event: one fixed delivery ID, so a job gets it once whatever
# races (two archivers settling its last files at once both try; the entry's key lets one in).
ARCHIVE_ENTRY_ID = "archive"


def new_file_id() -> str:
    """`fil_` + 128 random bits: unique without coordination (reading a file needs a key or a ticket)."""
    return f"fil_{random.getrandbits(128):032x}"


def file_url(base_url: str, file_id: str) -> str:
    """Where relay serves a file: `GET /v1/files/{id}` under the relay's public URL."""
    return f"{base_url.rstrip('/')}/v1/files/{file_id}"


def host_of(url: str) -> str:
    """The host a fetch of `url` counts against for per-host concurrency."""
    return (urlsplit(url).hostname or "").lower().rstrip(".")


def files_to_archive(
    result: Any, hosts: Sequence[str], base_url: str, make_id: Callable[[], str] = new_file_id
) -> tuple[ArchivedFile, ...]:
    """The pending files of a final `result`: each http(s) URL on an archive host, in document order, at most
    MAX_FILES_PER_RESULT. No hosts: none."""
    if not hosts or result is None:
        return ()
    files = []
    for pointer, url in file_urls(result, hosts)[:MAX_FILES_PER_RESULT]:
        file_id = make_id()
        files.append(ArchivedFile(file_id, pointer, url, file_url(base_url, file_id), FileStatus.PENDING))
    return tuple(files)


def after_fetch(
    claim: FileClaim,
    outcome: FetchedFile | FetchError,
    now: float,
    schedule: Sequence[float] = RETRY_SCHEDULE_S,
    rand: Callable[[], float] = random.random,
) -> FileResult:
    """What a fetch's outcome makes of its file at `now`: archived; retried on the schedule when the error
    may pass (a 5xx, a timeout, a dropped connection) and the schedule is not spent; else failed."""
    if isinstance(outcome, FetchedFile):
        return FileResult(
            claim.id,
            claim.attempts,
            FileStatus.ARCHIVED,
            None,
            now,
            outcome.bytes,
            outcome.sha256,
            outcome.content_type,
        )
    error = str(outcome)
    when = next_attempt_at(claim.attempts, now, schedule, RETRY_JITTER, rand) if outcome.retryable else None
    if when is None:
        return FileResult(claim.id, claim.attempts, FileStatus.FAILED, None, now, error=error)
    return FileResult(claim.id, claim.attempts, FileStatus.PENDING, when, now, error=error)


def all_settled(statuses: Iterable[str]) -> bool:
    """Whether a job's files (their stored statuses) are all archived or failed; a job without files is not
    one that archiving settles."""
    seen = False
    for status in statuses:
        if not FileStatus(status).settled:
            return False
        seen = True
    return seen


def set_files(job: Job, files: Iterable[ArchivedFile]) -> Job:
    """Give `job` its files in place: only a job built or read just now, held by nobody else yet."""
    object.__setattr__(job, "files", tuple(files))  # a record refuses assignment only to the type checker
    return job


def with_files(job: Job, files: Sequence[ArchivedFile]) -> Job:
    """A job just made final by a result carries that result's files (so does its event)."""
    if files and job.final:
        set_files(job, files)
    return job


def archive_entry(job: Job) -> Callback:
    """The history entry that carries a job's `job.archived` event."""
    return Callback(job.job_id, job.status, ARCHIVE_ENTRY_ID, b"{}", via="archive")
