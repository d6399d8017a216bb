"""Crash: a file being archived when `relay serve` is SIGKILLed (its origin hanging mid-body) is archived
after the restart, once."""

from __future__ import annotations

import hashlib
import os
import signal
from pathlib import Path
from typing import Any

import orjson

from tests.archive.origin import Route, origin_server
from tests.conftest import REPLICATE_SECRET, signed_headers, wait_for
from tests.e2e.conftest import RelayProcess, write_config

DATA = os.urandom(2 * 1024 * 1024)


async def test_a_file_in_flight_at_sigkill_ends_archived_once(tmp_path: Path, spawn: Any) -> None:
    files = tmp_path / "files"
    config = write_config(
        tmp_path / "relay.toml",
        allow_private_destinations=True,
        sources={
            "replicate": {
                "kind": "replicate",
                "secret": REPLICATE_SECRET,
                "archive": True,
                "archive_hosts": ["127.0.0.1"],
            }
        },
    )
    with config.open("a") as toml:
        toml.write(f'\n[archive]\nstore = "{files.as_uri()}"\n')
    async with origin_server() as origin:
        origin.routes["/out.bin"] = Route(body=DATA, stall_after=len(DATA) // 2)  # hangs mid-body
        first: RelayProcess = spawn("--config", str(config))
        await first.ready()
        body = orjson.dumps({"id": "p", "status": "succeeded", "output": [origin.url("/out.bin")]})
        async with first.client() as client:
            answer = await client.post(
                "/hooks/replicate", content=body, headers=signed_headers(REPLICATE_SECRET, body)
            )
            assert answer.status_code == 200, answer.text
        await wait_for(lambda: origin.paths() == ["/out.bin"], within=10)
        first.signal(signal.SIGKILL)
        assert await first.exited(within=10) == -signal.SIGKILL

        origin.routes["/out.bin"] = Route(body=DATA)
        second: RelayProcess = spawn("--config", str(config), "--port", str(first.port), port=first.port)
        await second.ready()
        async with second.client() as client:

            async def archived() -> bool:
                job = (await client.get("/v1/jobs/replicate/p")).json()
                return bool(job["files"][0]["status"] == "archived")

            await wait_for(archived, within=15)
            (file,) = (await client.get("/v1/jobs/replicate/p")).json()["files"]
            served = await client.get(f"/v1/files/{file['id']}")
            events = (await client.get("/v1/jobs/replicate/p/events")).text
    assert file["sha256"] == hashlib.sha256(DATA).hexdigest() and served.content == DATA
    assert origin.paths() == ["/out.bin", "/out.bin"]  # the one in flight, then once more
    assert [p.name for p in files.rglob("*") if p.is_file() and not p.name.startswith(".")] == [file["id"]]
    assert events.count("event: job.archived") == 1
