"""Archiving result files: blob stores (a folder or S3), and fetching a file from its origin into one."""

from relay.archive.blobs import Blob, BlobInfo, BlobNotFound, BlobStore, ByteRange, RangeNotSatisfiable
from relay.archive.config import ArchiveConfig
from relay.archive.fetch import (
    BadStatus,
    FetchedFile,
    FetchError,
    FetchTimeout,
    FileTooLarge,
    HostRefused,
    archive_session,
    fetch_to_store,
)
from relay.archive.file_store import FileStore
from relay.archive.hosts import file_urls, host_allowed
from relay.archive.stores import open_blob_store

__all__ = [
    "ArchiveConfig",
    "BadStatus",
    "Blob",
    "BlobInfo",
    "BlobNotFound",
    "BlobStore",
    "ByteRange",
    "FetchError",
    "FetchTimeout",
    "FetchedFile",
    "FileStore",
    "FileTooLarge",
    "HostRefused",
    "RangeNotSatisfiable",
    "archive_session",
    "fetch_to_store",
    "file_urls",
    "host_allowed",
    "open_blob_store",
]
