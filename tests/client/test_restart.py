"""A rolling restart under a waiter and a stream: `relay serve` is stopped (SIGTERM) and started again on the
same port and database while wait() and events() are held; both carry on and end with the job."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path
from typing import Any

import orjson

from relay.client import AsyncClient, Event
from tests.conftest import API_KEY, DEMO_SECRET, free_port, signed_headers, wait_for
from tests.e2e.conftest import RelayProcess, write_config


async def _held(process: RelayProcess, count: int) -> bool:
    async with process.client() as http:
        metrics = (await http.get("/metrics")).text
    match = re.search(r"^relay_waiters (\S+)$", metrics, re.MULTILINE)
    return match is not None and float(match[1]) == count


async def _post(process: RelayProcess, status: str) -> None:
    body = orjson.dumps({"id": "job-1", "status": status})
    async with process.client(api_key=None) as http:
        answer = await http.post("/hooks/demo", content=body, headers=signed_headers(DEMO_SECRET, body))
    assert answer.status_code == 200, answer.text


async def test_wait_and_events_ride_through_a_restart(tmp_path: Path, spawn: Any) -> None:
    """The job finishes on the relay started after the restart; the waiter gets it, and the stream gets each
    event once (the one before the restart is not repeated)."""
    port = free_port()
    config = write_config(tmp_path / "relay.toml", port=port)
    first: RelayProcess = spawn("--config", str(config), port=port)
    await first.ready()
    events: list[Event] = []

    async with AsyncClient(first.base_url, api_key=API_KEY) as client:

        async def follow() -> None:
            async for event in client.events("demo", "job-1"):
                events.append(event)

        await client.register("demo", "job-1", timeout_s=600)
        waiting = asyncio.create_task(client.wait("demo", "job-1", timeout=60))
        following = asyncio.create_task(follow())
        await _post(first, "processing")
        await wait_for(lambda: len(events) == 1, within=10)
        await wait_for(lambda: _held(first, 2), within=10)

        await first.stop()  # held polls are answered with the job as it stands, the stream ends
        second: RelayProcess = spawn("--config", str(config), port=port)
        await second.ready()
        await wait_for(lambda: _held(second, 2), within=15)  # both came back on their own
        await _post(second, "succeeded")
        job = await asyncio.wait_for(waiting, 10)
        await asyncio.wait_for(following, 10)

    assert job.status == "succeeded" and job.is_final
    assert [e.type for e in events] == ["job.running", "job.succeeded"]
    assert events[0].id < events[1].id
