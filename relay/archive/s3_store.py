"""The S3 store (`s3://bucket/prefix`): any S3-compatible service (AWS, MinIO, R2, Backblaze B2), via obstore.

Uploads go through obstore's writer: a blob smaller than one part is sent as one PUT when the stream ends;
a larger one as a multipart upload, completed only when the stream ends and aborted when it fails or the task
is cancelled, so a failed upload leaves no object (docs/decisions.md, "Archiving: the stores").
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator
from datetime import timedelta
from typing import TYPE_CHECKING, Any

import obstore
from obstore.exceptions import BaseError
from obstore.store import S3Store as _ObstoreS3Store

from relay.archive.blobs import Blob, BlobInfo, BlobNotFound, ByteRange, RangeNotSatisfiable, check_key

if TYPE_CHECKING:
    from obstore import GetOptions, GetResult

__all__ = ["S3Store"]

PART_BYTES = 5 * 1024 * 1024  # S3's smallest part: the most one upload buffers, times PART_CONCURRENCY
PART_CONCURRENCY = 4  # parts of one upload in flight at once
READ_BYTES = 256 * 1024  # a read yields chunks of at least this size (obstore's default is 10 MiB)


class S3Store:
    """Blobs as objects under `prefix` in `bucket`. Settings not given come from the usual AWS environment
    variables (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`, `AWS_REGION`...)."""

    def __init__(
        self,
        bucket: str,
        prefix: str = "",
        *,
        endpoint_url: str | None = None,
        region: str | None = None,
        access_key_id: str | None = None,
        secret_access_key: str | None = None,
        session_token: str | None = None,
    ) -> None:
        self.bucket = bucket
        self.prefix = prefix
        given = {
            "endpoint": endpoint_url,
            "region": region,
            "access_key_id": access_key_id,
            "secret_access_key": secret_access_key,
            "session_token": session_token,
        }
        config: Any = {name: value for name, value in given.items() if value is not None}
        # A plain-http endpoint is the operator's explicit choice (MinIO on a private network, a test server).
        plain_http = endpoint_url is not None and endpoint_url.startswith("http://")
        self._store = _ObstoreS3Store(
            bucket,
            prefix=prefix or None,
            config=config,
            client_options={"allow_http": True} if plain_http else None,
        )

    def __repr__(self) -> str:
        return f"S3Store(bucket={self.bucket!r}, prefix={self.prefix!r})"

    async def put_stream(self, key: str, chunks: AsyncIterator[bytes], content_type: str) -> None:
        """The object's Content-Type is set, so a presigned URL serves the file as what it is."""
        writer = obstore.open_writer_async(
            self._store,
            check_key(key),
            attributes={"Content-Type": content_type},
            buffer_size=PART_BYTES,
            max_concurrency=PART_CONCURRENCY,
        )
        async with writer:  # leaving it by an exception (or a cancellation) aborts the upload
            async for chunk in chunks:
                await writer.write(chunk)

    async def open(self, key: str, byte_range: ByteRange | None = None) -> Blob:
        options: GetOptions = {}
        if byte_range is not None:
            options["range"] = (
                {"offset": byte_range.start} if byte_range.end is None else (byte_range.start, byte_range.end)
            )
        try:
            result = await obstore.get_async(self._store, check_key(key), options=options)
        except FileNotFoundError:
            raise BlobNotFound(key) from None
        except BaseError:
            # S3 answers 416 for a range past the end; tell it apart from other failures by the size.
            info = await self.stat(key) if byte_range is not None else None
            if info is not None and byte_range is not None and byte_range.start >= info.size:
                raise RangeNotSatisfiable(key, byte_range.start, info.size) from None
            raise
        start, end = result.range
        return Blob(result.meta["size"], start, end, _chunks(result))

    async def stat(self, key: str) -> BlobInfo | None:
        try:
            meta = await obstore.head_async(self._store, check_key(key))
        except FileNotFoundError:
            return None
        return BlobInfo(meta["size"])

    async def delete(self, key: str) -> None:
        await obstore.delete_async(self._store, check_key(key))

    async def presigned_url(self, key: str, expires_s: float) -> str | None:
        """A presigned GET URL (SigV4: at most 7 days)."""
        return await obstore.sign_async(self._store, "GET", check_key(key), timedelta(seconds=expires_s))

    async def remove_stale(self, older_than_s: float) -> int:
        """Nothing: an upload a killed process left pending is invisible; a bucket lifecycle rule
        (AbortIncompleteMultipartUpload) reclaims it (docs/decisions.md)."""
        return 0

    async def aclose(self) -> None:
        return None


async def _chunks(result: GetResult) -> AsyncGenerator[bytes, None]:
    async for chunk in result.stream(min_chunk_size=READ_BYTES):
        yield chunk
