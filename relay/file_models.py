"""Value types of archiving: a result's file as the job object shows it, and a file claimed for a fetch.
No I/O here; what a fetch does to a file is in relay/domain/archive.py."""

from __future__ import annotations

import enum
from typing import Any

from relay.models import record

__all__ = ["ARCHIVED_EVENT_TYPE", "ArchivedFile", "FileClaim", "FileResult", "FileStatus", "blob_key"]

# Made once every file of a job is settled (archived or failed); sent only to subscriptions that name it.
ARCHIVED_EVENT_TYPE = "job.archived"


class FileStatus(enum.StrEnum):
    PENDING = "pending"
    FETCHING = "fetching"  # claimed under a lease; the API shows it as pending
    ARCHIVED = "archived"
    FAILED = "failed"

    @property
    def settled(self) -> bool:
        return self in (FileStatus.ARCHIVED, FileStatus.FAILED)


@record
class ArchivedFile:
    """One file of a job: a URL found at `pointer` in its result, and what archiving made of it."""

    id: str
    pointer: str
    source_url: str
    url: str  # where relay serves it (`GET /v1/files/{id}`)
    status: FileStatus
    bytes: int | None = None
    sha256: str | None = None
    content_type: str | None = None
    error: str | None = None

    def to_public(self) -> dict[str, Any]:
        status = FileStatus.PENDING if self.status == FileStatus.FETCHING else self.status
        return {
            "id": self.id,
            "pointer": self.pointer,
            "source_url": self.source_url,
            "url": self.url,
            "status": status.value,
            "bytes": self.bytes,
            "sha256": self.sha256,
            "content_type": self.content_type,
            "error": self.error,
        }


@record
class FileClaim:
    """A file taken for one fetch: `attempts` counts this one, and the claim holds while it is unchanged."""

    id: str
    job_row: int
    source: str
    source_url: str
    host: str
    attempts: int


@record
class FileResult:
    """What one fetch left its file as (relay/domain/archive.py `after_fetch`)."""

    file_id: str
    attempts: int  # the claim's: a result whose claim was lost is not recorded
    status: FileStatus
    next_attempt_at: float | None
    updated_at: float
    bytes: int | None = None
    sha256: str | None = None
    content_type: str | None = None
    error: str | None = None


def blob_key(file_id: str) -> str:
    """Where a file's bytes are kept in the blob store."""
    return f"files/{file_id}"
