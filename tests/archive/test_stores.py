"""The blob store behaviour suite: every test runs against the folder store and the S3 store, for real."""

from __future__ import annotations

import asyncio
import hashlib
import os
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from relay.archive import (
    ArchiveConfig,
    BlobNotFound,
    ByteRange,
    FileStore,
    RangeNotSatisfiable,
    open_blob_store,
)
from relay.archive.blobs import check_key
from tests.archive.conftest import BUCKET, S3Server, StoreUnderTest

MIB = 1024 * 1024


async def chunks_of(data: bytes, size: int = 64 * 1024) -> AsyncIterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start : start + size]


async def generated(total: int, digest: hashlib._Hash, size: int = 256 * 1024) -> AsyncIterator[bytes]:
    """`total` random bytes, made as they are asked for (never held whole), hashed into `digest`."""
    for start in range(0, total, size):
        chunk = os.urandom(min(size, total - start))
        digest.update(chunk)
        yield chunk


async def failing_after(data: bytes) -> AsyncIterator[bytes]:
    async for chunk in chunks_of(data):
        yield chunk
    raise ConnectionResetError("the origin hung up")


async def test_a_streamed_20_mib_put_reads_back_whole(store_under_test: StoreUnderTest) -> None:
    """20 MiB from a generator are stored and read back byte for byte, with their size."""
    store = store_under_test.store
    written = hashlib.sha256()
    await store.put_stream("jobs/job_1/fil_1.bin", generated(20 * MIB, written), "application/octet-stream")

    blob = await store.open("jobs/job_1/fil_1.bin")
    read = hashlib.sha256()
    received = 0
    async for chunk in blob:
        read.update(chunk)
        received += len(chunk)
    assert (blob.size, blob.start, blob.end, received) == (20 * MIB, 0, 20 * MIB, 20 * MIB)
    assert read.hexdigest() == written.hexdigest()
    assert (await store.stat("jobs/job_1/fil_1.bin")) is not None
    assert await store_under_test.leftovers() == ["jobs/job_1/fil_1.bin"]  # and no temp file


async def test_ranges_read_part_of_a_blob(store_under_test: StoreUnderTest) -> None:
    """A range reads bytes start..end (exclusive), to the end when open, clamped at the blob's end."""
    store = store_under_test.store
    data = bytes(range(256)) * 4
    await store.put_stream("f.bin", chunks_of(data, 100), "application/octet-stream")

    middle = await store.open("f.bin", ByteRange(10, 20))
    assert (middle.size, middle.start, middle.end) == (1024, 10, 20)
    assert await middle.read_all() == data[10:20]
    assert await (await store.open("f.bin", ByteRange(1000))).read_all() == data[1000:]
    past_end = await store.open("f.bin", ByteRange(1020, 5000))
    assert (past_end.end, await past_end.read_all()) == (1024, data[1020:])
    with pytest.raises(RangeNotSatisfiable):
        await store.open("f.bin", ByteRange(1024))


async def test_stat_and_delete(store_under_test: StoreUnderTest) -> None:
    """stat gives the size; after delete the blob is gone, and deleting again is no error."""
    store = store_under_test.store
    await store.put_stream("a/b.txt", chunks_of(b"hello"), "text/plain")
    info = await store.stat("a/b.txt")
    assert info is not None and info.size == 5

    await store.delete("a/b.txt")
    await store.delete("a/b.txt")
    assert await store.stat("a/b.txt") is None
    with pytest.raises(BlobNotFound):
        await store.open("a/b.txt")
    assert await store_under_test.leftovers() == []


async def test_an_empty_blob(store_under_test: StoreUnderTest) -> None:
    """A zero-byte file is a blob like any other."""
    store = store_under_test.store
    await store.put_stream("empty", chunks_of(b""), "text/plain")
    blob = await store.open("empty")
    assert (blob.size, await blob.read_all()) == (0, b"")


@pytest.mark.parametrize("size", [100 * 1024, 12 * MIB], ids=["one-part", "multipart"])
async def test_a_failed_stream_leaves_nothing(store_under_test: StoreUnderTest, size: int) -> None:
    """A stream that raises midway leaves no blob, no temp file and no pending upload; the error comes out."""
    store = store_under_test.store
    with pytest.raises(ConnectionResetError):
        await store.put_stream("jobs/j/f.bin", failing_after(os.urandom(size)), "image/png")
    assert await store.stat("jobs/j/f.bin") is None
    assert await store_under_test.leftovers() == []


async def test_a_failed_overwrite_keeps_the_earlier_blob(store_under_test: StoreUnderTest) -> None:
    """Writing a key again replaces it only when the new stream completes."""
    store = store_under_test.store
    await store.put_stream("f", chunks_of(b"first"), "text/plain")
    with pytest.raises(ConnectionResetError):
        await store.put_stream("f", failing_after(b"second"), "text/plain")
    assert await (await store.open("f")).read_all() == b"first"
    await store.put_stream("f", chunks_of(b"third"), "text/plain")
    assert await (await store.open("f")).read_all() == b"third"


async def test_a_cancelled_put_leaves_nothing(store_under_test: StoreUnderTest) -> None:
    """A put cancelled while its stream waits (a stalled download) leaves nothing behind."""
    store = store_under_test.store
    sent_all = asyncio.Event()

    async def stalls_after_12_mib() -> AsyncIterator[bytes]:
        async for chunk in chunks_of(os.urandom(12 * MIB)):
            yield chunk
        sent_all.set()
        await asyncio.Event().wait()
        yield b""  # never reached

    put = asyncio.create_task(store.put_stream("f.bin", stalls_after_12_mib(), "image/png"))
    async with asyncio.timeout(10):
        await sent_all.wait()
    put.cancel()
    with pytest.raises(asyncio.CancelledError):
        await put
    assert await store_under_test.leftovers() == []


async def test_a_reader_that_stops_early_releases_the_blob(store_under_test: StoreUnderTest) -> None:
    """aclose() after one chunk (or none) ends the read; the blob can then be deleted."""
    store = store_under_test.store
    await store.put_stream("f", chunks_of(os.urandom(2 * MIB)), "image/png")
    unread = await store.open("f")
    await unread.aclose()
    partly = await store.open("f")
    assert len(await anext(aiter(partly))) > 0
    await partly.aclose()
    await store.delete("f")
    assert await store_under_test.leftovers() == []


async def test_a_presigned_url_serves_the_blob_on_s3_only(store_under_test: StoreUnderTest) -> None:
    """S3 gives a URL anyone can GET the bytes from, with the content type; the folder store gives None."""
    store = store_under_test.store
    data = os.urandom(300_000)
    await store.put_stream("jobs/j/out.png", chunks_of(data), "image/png")
    url = await store.presigned_url("jobs/j/out.png", 60)
    if store_under_test.kind == "file":
        assert url is None
        return
    assert url is not None
    async with httpx.AsyncClient() as client:
        response = await client.get(url)
    assert response.status_code == 200
    assert response.content == data
    assert response.headers["content-type"] == "image/png"


@pytest.mark.parametrize("key", ["", "../x", "a/../b", ".hidden", "a/.f.part", "a//b", "/abs", "a b", "é"])
async def test_keys_that_could_escape_or_hide_are_refused(store_under_test: StoreUnderTest, key: str) -> None:
    """Every operation refuses a key with empty, dot-led or unusual segments before touching storage."""
    store = store_under_test.store
    with pytest.raises(ValueError, match="invalid blob key"):
        await store.put_stream(key, chunks_of(b"x"), "text/plain")
    with pytest.raises(ValueError, match="invalid blob key"):
        await store.open(key)
    with pytest.raises(ValueError, match="invalid blob key"):
        await store.delete(key)
    assert await store_under_test.leftovers() == []


def test_check_key_takes_ordinary_keys() -> None:
    """Keys as relay makes them pass unchanged."""
    assert check_key("jobs/job_01H/fil_01H.png") == "jobs/job_01H/fil_01H.png"


@pytest.mark.parametrize(
    "url",
    ["ftp://x/y", "file://otherhost/x", "s3://Bad_Bucket/x", "s3://ab/x", "s3://a..b/x", "mem://x", "file:"],
)
def test_store_urls_that_name_no_store_are_refused(url: str) -> None:
    """open_blob_store says which forms work."""
    with pytest.raises(ValueError, match="s3://bucket/prefix"):
        open_blob_store(url)


def test_byte_ranges_must_be_non_empty() -> None:
    """A range with a negative start, or an end not after its start, is refused when made."""
    for start, end in [(-1, None), (5, 5), (5, 4)]:
        with pytest.raises(ValueError):
            ByteRange(start, end)


async def test_the_folder_store_prunes_emptied_folders(file_store: StoreUnderTest, tmp_path: Path) -> None:
    """Deleting a job's last file removes its folder, not the store's own folder or a sibling's."""
    store = file_store.store
    await store.put_stream("jobs/job_1/a", chunks_of(b"a"), "text/plain")
    await store.put_stream("jobs/job_1/b", chunks_of(b"b"), "text/plain")
    await store.put_stream("jobs/job_2/c", chunks_of(b"c"), "text/plain")
    root = tmp_path / "files"

    await store.delete("jobs/job_1/a")
    assert (root / "jobs" / "job_1").is_dir()
    await store.delete("jobs/job_1/b")
    assert sorted(p.name for p in (root / "jobs").iterdir()) == ["job_2"]
    await store.delete("jobs/job_2/c")
    assert list(root.iterdir()) == []
    await store.put_stream("jobs/job_1/a", chunks_of(b"again"), "text/plain")
    assert await (await store.open("jobs/job_1/a")).read_all() == b"again"


async def test_archive_config_opens_its_store(tmp_path: Path, s3_server: S3Server) -> None:
    """ArchiveConfig hands its S3 settings to the store, and keeps the secrets out of its repr."""
    folder = ArchiveConfig(store=(tmp_path / "f").as_uri()).open_store()
    assert isinstance(folder, FileStore) and folder.root == tmp_path / "f"
    await folder.aclose()
    config = ArchiveConfig(
        store=f"s3://{BUCKET}/config-test",
        s3_endpoint_url=s3_server.endpoint_url,
        s3_region="us-east-1",
        s3_access_key_id="testing",
        s3_secret_access_key="secret-never-shown",
    )
    assert "secret-never-shown" not in repr(config)
    bucket = config.open_store()
    await bucket.put_stream("k", chunks_of(b"via config"), "text/plain")
    assert await (await bucket.open("k")).read_all() == b"via config"
    await bucket.aclose()
