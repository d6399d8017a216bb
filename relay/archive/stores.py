"""`open_blob_store(url)`: the archive's `store` setting, a `file://` folder or an `s3://` bucket."""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import unquote, urlsplit

from relay.archive.blobs import BlobStore
from relay.archive.file_store import FileStore

__all__ = ["open_blob_store"]

_FORMS = "file:///var/lib/relay/files, file:relative/folder or s3://bucket/prefix"
# S3's rules for bucket names that work in virtual-host-style URLs: a DNS name of 3 to 63 characters.
_BUCKET = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")


def open_blob_store(
    url: str,
    *,
    endpoint_url: str | None = None,
    region: str | None = None,
    access_key_id: str | None = None,
    secret_access_key: str | None = None,
    session_token: str | None = None,
) -> BlobStore:
    """The store `url` names; the keyword options are for S3 (the environment's AWS_* fill in the rest).

    A ValueError says what is wrong with `url` and which forms work."""
    parts = urlsplit(url)
    if parts.scheme == "file":
        if parts.netloc not in ("", "localhost") or not parts.path or parts.query or parts.fragment:
            raise ValueError(f"invalid file store URL {url!r}: use {_FORMS}")
        return FileStore(Path(unquote(parts.path)))
    if parts.scheme == "s3":
        bucket, prefix = parts.netloc, parts.path.strip("/")
        if not _BUCKET.fullmatch(bucket) or ".." in bucket or parts.query or parts.fragment:
            raise ValueError(
                f"invalid S3 store URL {url!r}: the bucket must be a DNS name of 3 to 63 lowercase letters,"
                f" digits, '.' and '-'; use {_FORMS}"
            )
        from relay.archive.s3_store import S3Store  # obstore loads only for an S3 store

        return S3Store(
            bucket,
            prefix,
            endpoint_url=endpoint_url,
            region=region,
            access_key_id=access_key_id,
            secret_access_key=secret_access_key,
            session_token=session_token,
        )
    raise ValueError(f"unsupported archive store {url!r}: use {_FORMS}")
