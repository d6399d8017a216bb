"""Fixtures for the archive tests: each blob store for real (a folder in tmp_path; S3 on moto's server on a
loopback port, one per test session, a fresh prefix per test), a file origin, and an archive client."""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import boto3  # type: ignore[import-untyped]
import pytest
from moto.server import ThreadedMotoServer

from relay.archive import BlobStore, archive_session, open_blob_store
from tests.archive.origin import Origin, origin_server

BUCKET = "relay-archive-test"  # a valid DNS name: obstore addresses the bucket by it
CREDENTIALS = {"access_key_id": "testing", "secret_access_key": "testing", "region": "us-east-1"}


@dataclass(frozen=True)
class S3Server:
    endpoint_url: str
    client: Any  # boto3's S3 client, to look behind the store's back


@dataclass
class StoreUnderTest:
    """A store, and how to list everything it left behind (files, temp files, objects, pending uploads)."""

    kind: str
    store: BlobStore
    leftovers: Callable[[], Awaitable[list[str]]]


@pytest.fixture(scope="session")
def s3_server() -> Iterator[S3Server]:
    """moto's S3 on a free loopback port, with the test bucket."""
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # one log line per request otherwise
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint_url = f"http://{host}:{port}"
    client = boto3.client(
        "s3",
        endpoint_url=endpoint_url,
        aws_access_key_id=CREDENTIALS["access_key_id"],
        aws_secret_access_key=CREDENTIALS["secret_access_key"],
        region_name=CREDENTIALS["region"],
    )
    client.create_bucket(Bucket=BUCKET)
    try:
        yield S3Server(endpoint_url, client)
    finally:
        server.stop()


def _file_store(root: Path) -> StoreUnderTest:
    def every_file() -> list[str]:
        return sorted(str(path.relative_to(root)) for path in root.rglob("*") if path.is_file())

    async def leftovers() -> list[str]:
        return await asyncio.to_thread(every_file)

    return StoreUnderTest("file", open_blob_store(root.as_uri()), leftovers)


def _s3_store(server: S3Server) -> StoreUnderTest:
    prefix = f"test-{uuid.uuid4().hex}"
    store = open_blob_store(f"s3://{BUCKET}/{prefix}", endpoint_url=server.endpoint_url, **CREDENTIALS)

    async def leftovers() -> list[str]:
        objects = server.client.list_objects_v2(Bucket=BUCKET, Prefix=prefix).get("Contents", [])
        uploads = server.client.list_multipart_uploads(Bucket=BUCKET, Prefix=prefix).get("Uploads", [])
        keys = [o["Key"] for o in objects] + [f"upload of {u['Key']}" for u in uploads]
        return sorted(key.replace(f"{prefix}/", "", 1) for key in keys)

    return StoreUnderTest("s3", store, leftovers)


@pytest.fixture(params=["file", "s3"])
async def store_under_test(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[StoreUnderTest]:
    """Each store for real: the behaviour suite runs once per store."""
    if request.param == "file":
        target = _file_store(tmp_path / "files")
    else:
        target = _s3_store(request.getfixturevalue("s3_server"))
    yield target
    await target.store.aclose()


@pytest.fixture
async def file_store(tmp_path: Path) -> AsyncIterator[StoreUnderTest]:
    target = _file_store(tmp_path / "files")
    yield target
    await target.store.aclose()


@pytest.fixture
async def origin() -> AsyncIterator[Origin]:
    async with origin_server() as server:
        yield server


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    """The archive client with private destinations allowed, as the loopback origin needs."""
    async with archive_session(allow_private=True) as client:
        yield client
