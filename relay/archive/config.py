"""The `[archive]` settings as the archive code takes them (settings.py will read them into this)."""

from __future__ import annotations

from dataclasses import dataclass, field

from relay.archive.blobs import BlobStore
from relay.archive.stores import open_blob_store

__all__ = ["ArchiveConfig"]


@dataclass(frozen=True)
class ArchiveConfig:
    """Where files go and the bounds on fetching them. S3 settings left None come from AWS_* variables."""

    store: str
    s3_endpoint_url: str | None = None
    s3_region: str | None = None
    s3_access_key_id: str | None = field(default=None, repr=False)
    s3_secret_access_key: str | None = field(default=None, repr=False)
    s3_session_token: str | None = field(default=None, repr=False)
    max_file_bytes: int = 1024 * 1024 * 1024
    file_timeout_s: float = 300.0  # one file's whole fetch: connect, redirects, body, storing
    presigned_url_s: float = 300.0  # how long a presigned URL handed to a reader stays valid
    # `GET /v1/files/{id}` answers 302 to a presigned URL (S3 only); off: anyone holding the URL may read the
    # file until it expires, without relay's key or ticket.
    presigned_redirect: bool = False
    concurrency: int = 16  # fetches in flight in one process, all hosts together
    host_concurrency: int = 4  # fetches in flight at once from one host

    def open_store(self) -> BlobStore:
        """The store `store` names, with the S3 settings given here."""
        return open_blob_store(
            self.store,
            endpoint_url=self.s3_endpoint_url,
            region=self.s3_region,
            access_key_id=self.s3_access_key_id,
            secret_access_key=self.s3_secret_access_key,
            session_token=self.s3_session_token,
        )
