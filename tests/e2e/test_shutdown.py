"""Graceful shutdown: SIGTERM ends `relay serve` within a bound even while a long-poll is held."""

from __future__ import annotations

import asyncio
import re
import time
from pathlib import Path
from typing import Any

import httpx

from tests.conftest import wait_for
from tests.e2e.conftest import RelayProcess, write_config

# Held long-polls are answered as shutdown starts, so the stop does not wait out uvicorn's 5 s grace period.
EXIT_WITHIN_S = 4.0


async def _one_waiter_held(client: httpx.AsyncClient) -> bool:
    text = (await client.get("/metrics")).text
    match = re.search(r"^relay_waiters (\S+)$", text, re.MULTILINE)
    return match is not None and float(match[1]) == 1


async def test_sigterm_with_a_long_poll_held_exits_cleanly(tmp_path: Path, spawn: Any) -> None:
    """SIGTERM while a 60 s long-poll is held: the poll is answered at once and the process stops promptly."""
    config = write_config(tmp_path / "relay.toml")
    process: RelayProcess = spawn("--config", str(config))
    await process.ready()
    async with process.client() as client, process.client(timeout=30) as poller:
        long_poll = asyncio.create_task(poller.get("/v1/jobs/demo/never-finishes", params={"wait": 60}))
        try:
            await wait_for(lambda: _one_waiter_held(client), within=10)
            started = time.monotonic()
            await process.stop(within=EXIT_WITHIN_S)
            elapsed = time.monotonic() - started
            # The held request is answered (the job as it stands: still unknown), not cut off.
            answer = await asyncio.wait_for(long_poll, timeout=5)
        finally:
            long_poll.cancel()
    assert elapsed < EXIT_WITHIN_S
    assert answer.status_code == 404 and answer.json()["error"]["code"] == "unknown_job"
