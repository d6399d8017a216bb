"""The folder store (`file:///var/lib/relay/files`): one file per blob, written beside it and renamed.

File I/O runs in the store's own worker threads, so a slow disk never stalls the event loop, nor the default
thread pool's other users (the resolver's getaddrinfo); writes are gathered into `WRITE_BYTES` pieces, so a
download arriving in small chunks costs a few thread hops per MiB, not one per chunk. A blob is fsynced before
its rename and the folder after it: an archived file survives power loss.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import time
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from stat import S_ISREG
from typing import BinaryIO, TypeVar

from relay.archive.blobs import Blob, BlobInfo, BlobNotFound, ByteRange, check_key

__all__ = ["FileStore"]

WRITE_BYTES = 1024 * 1024  # written to disk in pieces of at least this size
READ_BYTES = 256 * 1024  # read back in chunks of this size
THREADS = 8  # file operations at once: writes, fsyncs, renames and reads

T = TypeVar("T")


async def _in_thread(threads: ThreadPoolExecutor, function: Callable[..., T], *args: object) -> T:
    """`function(*args)` in a worker thread. If the caller is cancelled meanwhile, the cancellation is
    raised only once the thread is done, so clean-up never closes a file under a write still running."""
    done = asyncio.get_running_loop().run_in_executor(threads, function, *args)
    try:
        return await asyncio.shield(done)
    except asyncio.CancelledError:
        await asyncio.wait([done])
        raise


def _create(temp: Path) -> BinaryIO:
    for _ in range(3):
        temp.parent.mkdir(parents=True, exist_ok=True)
        try:
            return temp.open("xb")
        except FileNotFoundError:  # a delete pruned the folder just made: make it again
            continue
    return temp.open("xb")


def _write(handle: BinaryIO, pieces: list[bytes]) -> None:
    handle.writelines(pieces)


def _commit(handle: BinaryIO, pieces: list[bytes], temp: Path, path: Path) -> None:
    """The last pieces, then fsync, rename over `path`, and fsync the folder so the rename is durable."""
    handle.writelines(pieces)
    handle.flush()
    os.fsync(handle.fileno())
    handle.close()
    os.replace(temp, path)
    folder = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(folder)
    finally:
        os.close(folder)


def _discard(handle: BinaryIO, temp: Path) -> None:
    handle.close()
    temp.unlink(missing_ok=True)


def _open_for_reading(path: Path, key: str) -> tuple[BinaryIO, int]:
    try:
        handle = path.open("rb")
    except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
        raise BlobNotFound(key) from None
    return handle, os.fstat(handle.fileno()).st_size


def _read_at(handle: BinaryIO, offset: int | None, size: int) -> bytes:
    if offset is not None:
        handle.seek(offset)
    return handle.read(size)


def _remove(root: Path, path: Path) -> None:
    """Unlink `path`, then its folders up to `root` while they are empty (a job's folder goes with it)."""
    try:
        path.unlink()
    except (FileNotFoundError, NotADirectoryError):
        return
    folder = path.parent
    while folder != root and folder.is_relative_to(root):
        try:
            folder.rmdir()
        except OSError:  # not empty (or gone): the folders above are not empty either
            return
        folder = folder.parent


def _remove_stale_parts(root: Path, older_than_s: float) -> int:
    cutoff = time.time() - older_than_s
    removed = 0
    for temp in root.rglob(".*.part") if root.is_dir() else ():
        try:
            if temp.stat().st_mtime < cutoff:
                temp.unlink()
                removed += 1
        except FileNotFoundError:  # its writer finished or gave up meanwhile
            continue
    return removed


class FileStore:
    """Blobs as files under `root`; keys are relative paths (checked, so none leaves `root`)."""

    def __init__(self, root: Path, threads: int = THREADS) -> None:
        self.root = root
        self._threads = ThreadPoolExecutor(threads, thread_name_prefix="relay-files")

    def __repr__(self) -> str:
        return f"FileStore({str(self.root)!r})"

    def _path(self, key: str) -> Path:
        return self.root / check_key(key)

    async def put_stream(self, key: str, chunks: AsyncIterator[bytes], content_type: str) -> None:
        """Write to a hidden temp file beside the blob (keys never start with `.`), then rename it."""
        path = self._path(key)
        temp = path.with_name(f".{path.name}.{secrets.token_hex(8)}.part")
        handle = await _in_thread(self._threads, _create, temp)
        try:
            pieces: list[bytes] = []
            pending = 0
            async for chunk in chunks:
                pieces.append(chunk)
                pending += len(chunk)
                if pending >= WRITE_BYTES:
                    await _in_thread(self._threads, _write, handle, pieces)
                    pieces, pending = [], 0
            await _in_thread(self._threads, _commit, handle, pieces, temp, path)
        except BaseException:
            # At once, not in a thread: a cancelled task must not leave the temp file for a later await.
            _discard(handle, temp)
            raise

    async def open(self, key: str, byte_range: ByteRange | None = None) -> Blob:
        """The file is opened now, so a blob deleted or replaced while it is read is still read whole."""
        handle, size = await _in_thread(self._threads, _open_for_reading, self._path(key), key)
        try:
            start, end = (0, size) if byte_range is None else byte_range.within(key, size)
        except BaseException:
            handle.close()
            raise
        return Blob(size, start, end, self._chunks(handle, start, end), release=handle.close)

    async def _chunks(self, handle: BinaryIO, start: int, end: int) -> AsyncGenerator[bytes, None]:
        try:
            offset: int | None = start
            remaining = end - start
            while remaining > 0:
                chunk = await _in_thread(self._threads, _read_at, handle, offset, min(READ_BYTES, remaining))
                if not chunk:  # cannot happen to a renamed-in file; never loop on it
                    raise OSError(f"{handle.name} ended {remaining} bytes early")
                offset = None
                remaining -= len(chunk)
                yield chunk
        finally:
            handle.close()

    async def stat(self, key: str) -> BlobInfo | None:
        try:
            result = await _in_thread(self._threads, os.stat, self._path(key))
        except (FileNotFoundError, NotADirectoryError):
            return None
        return BlobInfo(result.st_size) if S_ISREG(result.st_mode) else None

    async def delete(self, key: str) -> None:
        await _in_thread(self._threads, _remove, self.root, self._path(key))

    async def presigned_url(self, key: str, expires_s: float) -> str | None:
        """None: a folder has no URLs of its own; relay serves the bytes itself."""
        check_key(key)
        return None

    async def remove_stale(self, older_than_s: float) -> int:
        """Delete temp files a killed process left (`.NAME.HEX.part`) not written to for `older_than_s`;
        younger ones may be another process's write in progress. Answers how many."""
        return await _in_thread(self._threads, _remove_stale_parts, self.root, older_than_s)

    async def aclose(self) -> None:
        """Let the threads go once their work is done (a write in progress still completes)."""
        self._threads.shutdown(wait=False)
