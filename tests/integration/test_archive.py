"""Archiving on a real relay (each backend): a final result's files on archive hosts are copied from a real
origin on loopback into the store, served by `GET /v1/files/{id}`, and announced by `job.archived`.

The loops run by hand with an explicit clock: each test drives `Archiver.run_once(now)` and `drain()`.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from relay.archiver import Archiver
from relay.delivery import Deliverer
from relay.settings import Settings
from relay.sweeper import Sweeper
from tests.archive.conftest import BUCKET, CREDENTIALS, S3Server, s3_server
from tests.archive.origin import Origin, Route, origin_server
from tests.conftest import DEMO_SECRET, REPLICATE_SECRET, Clock, Relay, open_relay
from tests.integration.conftest import SettingsWith
from tests.subscriber import subscriber

__all__ = ["s3_server"]  # the fixture, for the S3 test

PNG = os.urandom(300_000)
BIN = os.urandom(70_000)


@pytest.fixture
async def origin() -> AsyncIterator[Origin]:
    async with origin_server() as server:
        yield server


def archive_settings(
    settings_with: SettingsWith, tmp_path: Path, top: dict[str, Any] | None = None, **archive: Any
) -> Settings:
    """Replicate archives files on 127.0.0.1 (the origin) into a folder in tmp_path."""
    return settings_with(
        allow_private_destinations=True,
        archive={"store": (tmp_path / "files").as_uri(), **archive},
        sources={"demo": {"kind": "standard-webhooks", "secret": DEMO_SECRET}, "replicate": archiving()},
        **(top or {}),
    )


def archiving() -> dict[str, Any]:
    return {"kind": "replicate", "secret": REPLICATE_SECRET, "archive": True, "archive_hosts": ["127.0.0.1"]}


async def finish(relay: Relay, job_id: str, output: Any, now: float) -> None:
    body = orjson.dumps({"id": job_id, "status": "succeeded", "output": output})
    answer = await relay.post_callback("replicate", body, secret=REPLICATE_SECRET, timestamp=now)
    assert answer.status_code == 200, answer.text


async def archive(relay: Relay, now: float) -> int:
    """One archiver round at `now`, its fetches to the end, and their results recorded."""
    archiver = relay.services.loop(Archiver)
    claimed = await archiver.run_once(now)
    await archiver.drain()
    return claimed


async def job(relay: Relay, job_id: str) -> dict[str, Any]:
    answer = await relay.client.get(f"/v1/jobs/replicate/{job_id}")
    assert answer.status_code == 200, answer.text
    return answer.json()  # type: ignore[no-any-return]


async def test_a_results_files_are_archived_served_and_announced_once(
    settings_with: SettingsWith, tmp_path: Path, origin: Origin
) -> None:
    """Two URLs on the archive host become archived files (right sha256); a URL on another host is left
    alone; the bytes are served after the origin is gone; job.archived reaches a subscriber once, last."""
    clock = Clock()
    origin.routes["/a.png"] = Route(body=PNG, headers={"Content-Type": "image/png"})
    origin.routes["/b.bin"] = Route(body=BIN, chunked=True)
    other = origin.url("/c.png", host="localhost")
    output = [origin.url("/a.png"), {"file": origin.url("/b.bin")}, other]
    settings = archive_settings(settings_with, tmp_path)
    async with subscriber() as sub, open_relay(settings, clock=clock, background=False) as relay:
        created = await relay.client.post(
            "/v1/subscriptions", json={"url": sub.url, "events": ["job.succeeded", "job.archived"]}
        )
        assert created.status_code == 201, created.text
        await finish(relay, "p1", output, clock.now)
        pending = await job(relay, "p1")
        assert [(f["pointer"], f["source_url"], f["status"]) for f in pending["files"]] == [
            ("/output/0", output[0], "pending"),
            ("/output/1/file", origin.url("/b.bin"), "pending"),
        ]
        assert await archive(relay, clock.now) == 2
        done = await job(relay, "p1")
        assert done["result"]["output"] == output  # the provider's result is never rewritten
        files = done["files"]
        assert [(f["status"], f["bytes"], f["sha256"], f["error"]) for f in files] == [
            ("archived", len(PNG), hashlib.sha256(PNG).hexdigest(), None),
            ("archived", len(BIN), hashlib.sha256(BIN).hexdigest(), None),
        ]
        assert files[0]["content_type"] == "image/png"
        assert files[0]["url"] == f"{settings.base_url}/v1/files/{files[0]['id']}"
        assert sorted(origin.paths()) == ["/a.png", "/b.bin"]  # one fetch each; the other host untouched

        # Deliveries: the final event, then job.archived carrying the files; another round makes no more.
        deliverer = relay.services.loop(Deliverer)
        for _ in range(3):
            await deliverer.run_once(clock.now)
            await deliverer.drain()
        assert await archive(relay, clock.now) == 0
        await deliverer.run_once(clock.now)
        await deliverer.drain()
        received = [orjson.loads(r.body) for r in await sub.received_at_least(2)]
        assert [event["type"] for event in received] == ["job.succeeded", "job.archived"]
        assert received[1]["data"]["files"] == files
        events = await relay.services.store.list_events("replicate", "p1")
        assert [e.type for e in events] == ["job.succeeded", "job.archived"]

        # The stream: both events in order, then it ends (nothing is left to come).
        stream = await relay.client.get("/v1/jobs/replicate/p1/events")
        assert [line for line in stream.text.splitlines() if line.startswith("event:")] == [
            "event: job.succeeded",
            "event: job.archived",
        ]

    # The origin is gone; relay serves the bytes, whole and in ranges.
    async with open_relay(settings, clock=clock, background=False) as relay:
        url = f"/v1/files/{files[0]['id']}"
        whole = await relay.client.get(url)
        assert whole.status_code == 200 and whole.content == PNG
        assert whole.headers["content-type"] == "image/png"
        assert whole.headers["etag"] == f'"{files[0]["sha256"]}"'
        assert whole.headers["x-content-type-options"] == "nosniff"
        assert whole.headers["content-disposition"] == "inline"
        assert "sandbox" in whole.headers["content-security-policy"]
        part = await relay.client.get(url, headers={"range": "bytes=10-19"})
        assert (part.status_code, part.content) == (206, PNG[10:20])
        assert part.headers["content-range"] == f"bytes 10-19/{len(PNG)}"
        tail = await relay.client.get(url, headers={"range": "bytes=-5"})
        assert (tail.status_code, tail.content) == (206, PNG[-5:])
        past = await relay.client.get(url, headers={"range": f"bytes={len(PNG)}-"})
        assert (past.status_code, past.headers["content-range"]) == (416, f"bytes */{len(PNG)}")
        binary = await relay.client.get(f"/v1/files/{files[1]['id']}")
        assert binary.content == BIN and binary.headers["content-disposition"] == "attachment"


async def test_a_500_is_retried_then_succeeds(
    settings_with: SettingsWith, tmp_path: Path, origin: Origin
) -> None:
    """A 5xx may pass: the file stays pending, due on the retry schedule, and is archived then."""
    clock = Clock()
    origin.routes["/x.png"] = Route(status=500, body=b"busy")
    async with open_relay(archive_settings(settings_with, tmp_path), clock=clock, background=False) as relay:
        await finish(relay, "p2", [origin.url("/x.png")], clock.now)
        assert await archive(relay, clock.now) == 1
        (waiting,) = (await job(relay, "p2"))["files"]
        assert (waiting["status"], waiting["error"]) == ("pending", "127.0.0.1 answered 500")
        origin.routes["/x.png"] = Route(body=PNG)
        assert await archive(relay, clock.now + 1) == 0  # not due yet
        assert await archive(relay, clock.advance(10)) == 1
        (archived,) = (await job(relay, "p2"))["files"]
        assert (archived["status"], archived["sha256"]) == ("archived", hashlib.sha256(PNG).hexdigest())
        events = await relay.services.store.list_events("replicate", "p2")
        assert [e.type for e in events] == ["job.succeeded", "job.archived"]


async def test_a_file_over_max_file_bytes_fails_without_a_partial_object(
    settings_with: SettingsWith, tmp_path: Path, origin: Origin
) -> None:
    """Too large is not retried: failed with a clear error, nothing kept; the job is still archived."""
    clock = Clock()
    origin.routes["/big.bin"] = Route(body=os.urandom(200_000), chunked=True)  # no length to refuse early
    settings = archive_settings(settings_with, tmp_path, max_file_bytes=100_000)
    async with open_relay(settings, clock=clock, background=False) as relay:
        await finish(relay, "p3", [origin.url("/big.bin")], clock.now)
        await archive(relay, clock.now)
        (failed,) = (await job(relay, "p3"))["files"]
        assert failed["status"] == "failed" and "max_file_bytes (100000)" in failed["error"]
        assert [p for p in (tmp_path / "files").rglob("*") if p.is_file()] == []
        assert await archive(relay, clock.advance(3600)) == 0
        served = await relay.client.get(f"/v1/files/{failed['id']}")
        assert (served.status_code, served.json()["error"]["code"]) == (409, "file_not_archived")
        events = await relay.services.store.list_events("replicate", "p3")
        assert [e.type for e in events] == ["job.succeeded", "job.archived"]


async def test_a_ticket_reads_its_own_jobs_files_only(
    settings_with: SettingsWith, tmp_path: Path, origin: Origin
) -> None:
    clock = Clock()
    origin.routes["/a.png"] = Route(body=PNG, headers={"Content-Type": "image/png"})
    async with open_relay(archive_settings(settings_with, tmp_path), clock=clock, background=False) as relay:
        await finish(relay, "mine", [origin.url("/a.png")], clock.now)
        await finish(relay, "theirs", [origin.url("/a.png")], clock.now)
        await archive(relay, clock.now)
        (mine,) = (await job(relay, "mine"))["files"]
        (theirs,) = (await job(relay, "theirs"))["files"]
        ticket = relay.services.tokens.ticket("replicate", "mine")
        async with relay.anonymous() as anonymous:
            own = await anonymous.get(f"/v1/files/{mine['id']}", params={"ticket": ticket})
            other = await anonymous.get(f"/v1/files/{theirs['id']}", params={"ticket": ticket})
            bare = await anonymous.get(f"/v1/files/{mine['id']}")
            unknown = await anonymous.get("/v1/files/fil_nothing", params={"ticket": ticket})
        assert (own.status_code, own.content) == (200, PNG)
        assert (other.status_code, bare.status_code, unknown.status_code) == (403, 401, 403)
        assert (await relay.client.get("/v1/files/fil_nothing")).status_code == 404


async def test_retention_deletes_a_jobs_files_with_it(
    settings_with: SettingsWith, tmp_path: Path, origin: Origin
) -> None:
    clock = Clock()
    origin.routes["/a.png"] = Route(body=PNG)
    settings = archive_settings(settings_with, tmp_path, {"retention_days": 30})
    async with open_relay(settings, clock=clock, background=False) as relay:
        await finish(relay, "old", [origin.url("/a.png")], clock.now)
        await archive(relay, clock.now)
        (file,) = (await job(relay, "old"))["files"]
        assert [p.name for p in (tmp_path / "files").rglob("*") if p.is_file()] == [file["id"]]
        await relay.services.loop(Sweeper).run_once(clock.advance(31 * 86_400))
        assert (await relay.client.get(f"/v1/files/{file['id']}")).status_code == 404
        assert await archive(relay, clock.now) == 1  # the purged file's bytes
        assert [p for p in (tmp_path / "files").rglob("*") if p.is_file()] == []


@pytest.mark.sqlite_only("the store is what differs here; the queue is the same on both backends")
async def test_files_are_archived_to_s3_and_served_or_redirected(
    settings_with: SettingsWith, tmp_path: Path, origin: Origin, s3_server: S3Server
) -> None:
    clock = Clock()
    origin.routes["/a.png"] = Route(body=PNG, headers={"Content-Type": "image/png"})
    prefix = f"relay-{os.urandom(4).hex()}"
    s3 = {
        "store": f"s3://{BUCKET}/{prefix}",
        "s3_endpoint_url": s3_server.endpoint_url,
        "s3_region": CREDENTIALS["region"],
        "s3_access_key_id": CREDENTIALS["access_key_id"],
        "s3_secret_access_key": CREDENTIALS["secret_access_key"],
    }
    settings = settings_with(allow_private_destinations=True, archive=s3, sources={"replicate": archiving()})
    async with open_relay(settings, clock=clock, background=False) as relay:
        await finish(relay, "s3", [origin.url("/a.png")], clock.now)
        await archive(relay, clock.now)
        (file,) = (await job(relay, "s3"))["files"]
        assert file["sha256"] == hashlib.sha256(PNG).hexdigest()
        objects = s3_server.client.list_objects_v2(Bucket=BUCKET, Prefix=prefix)["Contents"]
        assert [o["Key"] for o in objects] == [f"{prefix}/files/{file['id']}"]
        served = await relay.client.get(f"/v1/files/{file['id']}", headers={"range": "bytes=0-99"})
        assert (served.status_code, served.content) == (206, PNG[:100])
    redirecting = settings_with(
        allow_private_destinations=True,
        archive={**s3, "presigned_redirect": True},
        sources={"replicate": archiving()},
    )
    async with open_relay(redirecting, clock=clock, background=False) as relay:
        moved = await relay.client.get(f"/v1/files/{file['id']}")
        assert moved.status_code == 302 and moved.headers["location"].startswith(s3_server.endpoint_url)
