"""Where archived files live: one `BlobStore` interface, a folder (`file://`) or an S3 bucket (`s3://`).

A blob is written whole or not at all: `put_stream` makes it visible only once its last byte is stored, so a
reader never sees a partial file, and a failed or cancelled write leaves nothing behind.
"""

from __future__ import annotations

import re
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from dataclasses import dataclass
from typing import Protocol

__all__ = [
    "Blob",
    "BlobInfo",
    "BlobNotFound",
    "BlobStore",
    "ByteRange",
    "RangeNotSatisfiable",
    "check_key",
]


class BlobNotFound(LookupError):
    """No blob is stored under the key."""


class RangeNotSatisfiable(ValueError):
    """The requested range starts at or past the blob's end (HTTP 416)."""

    def __init__(self, key: str, start: int, size: int) -> None:
        super().__init__(f"range starting at byte {start} is past the end of {key!r} ({size} bytes)")
        self.size = size


@dataclass(frozen=True, slots=True)
class ByteRange:
    """Bytes `start` up to `end` (exclusive, as a slice); `end=None` reads to the blob's end."""

    start: int
    end: int | None = None

    def __post_init__(self) -> None:
        if self.start < 0 or (self.end is not None and self.end <= self.start):
            raise ValueError(f"a byte range needs 0 <= start < end, not {self.start}..{self.end}")

    def within(self, key: str, size: int) -> tuple[int, int]:
        """(start, end) of the range inside blob `key` of `size` bytes; RangeNotSatisfiable when none is."""
        if self.start >= size:
            raise RangeNotSatisfiable(key, self.start, size)
        return self.start, size if self.end is None else min(self.end, size)


@dataclass(frozen=True, slots=True)
class BlobInfo:
    """What a store knows of a blob. Its content type and sha256 are kept by relay's database, not here."""

    size: int


@dataclass(slots=True)
class Blob:
    """A blob being read: its whole `size`, and the bytes `start` to `end` (exclusive) that iterating yields.

    Iterating to the end releases what the store holds open; a reader that stops early calls `aclose()`."""

    size: int
    start: int
    end: int
    chunks: AsyncGenerator[bytes, None]
    release: Callable[[], None] | None = None  # for what is held before the first chunk (an open file)

    def __aiter__(self) -> AsyncIterator[bytes]:
        return self.chunks

    async def aclose(self) -> None:
        await self.chunks.aclose()
        if self.release is not None:
            self.release()

    async def read_all(self) -> bytes:
        """Every byte of the range at once: for small blobs and tests."""
        return b"".join([chunk async for chunk in self.chunks])


class BlobStore(Protocol):
    """A place for archived files, keyed by `/`-separated names (see `check_key`)."""

    async def put_stream(self, key: str, chunks: AsyncIterator[bytes], content_type: str) -> None:
        """Store the bytes `chunks` yields under `key`, in constant memory; visible only once complete.

        If `chunks` raises, or the call is cancelled, nothing is left under `key` (an earlier blob stays)."""
        ...

    async def open(self, key: str, byte_range: ByteRange | None = None) -> Blob:
        """The blob's bytes as a stream (all, or `byte_range`); BlobNotFound, RangeNotSatisfiable."""
        ...

    async def stat(self, key: str) -> BlobInfo | None:
        """The blob's size, or None when there is none."""
        ...

    async def delete(self, key: str) -> None:
        """Remove the blob; removing one that is not there is not an error."""
        ...

    async def presigned_url(self, key: str, expires_s: float) -> str | None:
        """A URL anyone can GET the blob from for `expires_s` seconds, or None when the store has none."""
        ...

    async def remove_stale(self, older_than_s: float) -> int:
        """Delete what writes interrupted by a crash left, untouched for `older_than_s`; answer how many."""
        ...

    async def aclose(self) -> None:
        """Release what the store holds open."""
        ...


# Segments of letters, digits, `.`, `_`, `-`, not starting with `.`: no `..`, no hidden temp names, the same
# meaning on every file system and as an S3 key.
_SEGMENT = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9._-]{0,199}")


def check_key(key: str) -> str:
    """`key` if it is a valid blob key (`jobs/job_1/fil_2.png`), else a ValueError saying why."""
    if not key or len(key) > 1024 or not all(_SEGMENT.fullmatch(part) for part in key.split("/")):
        raise ValueError(
            f"invalid blob key {key!r}: `/`-separated segments of letters, digits, '.', '_' and '-', "
            "none empty or starting with '.'"
        )
    return key
