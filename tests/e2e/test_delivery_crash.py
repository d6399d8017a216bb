"""Crash: deliveries pending or in flight when `relay serve` is SIGKILLed all go out after the restart."""

from __future__ import annotations

import signal
from collections import defaultdict
from pathlib import Path
from typing import Any

import orjson

from tests.conftest import DEMO_SECRET, signed_headers
from tests.e2e.conftest import RelayProcess, write_config
from tests.subscriber import HANG, Received, Reply, subscriber

JOBS = 12


async def test_deliveries_survive_sigkill_with_the_same_webhook_id(tmp_path: Path, spawn: Any) -> None:
    """Retrying, in-flight and unsent deliveries at a SIGKILL are all delivered after the restart."""
    config = write_config(
        tmp_path / "relay.toml",
        allow_private_destinations=True,
        delivery_timeout_s=30.0,
        endpoint_concurrency=4,
        retry_schedule_s=[1.0, 1.0, 1.0],
        retry_jitter=0.0,
    )
    # Before the crash: two answers of 500 (retrying), then every request hangs (in flight).
    async with subscriber([Reply(500), Reply(500)], then=HANG) as sub:
        first: RelayProcess = spawn("--config", str(config))
        await first.ready()
        async with first.client() as client:
            created = await client.post("/v1/subscriptions", json={"url": sub.url})
            secret = created.json()["secret"]
            for i in range(JOBS):
                body = orjson.dumps({"id": f"job-{i}", "status": "succeeded", "output": [i]})
                answer = await client.post(
                    "/hooks/demo", content=body, headers=signed_headers(DEMO_SECRET, body)
                )
                assert answer.status_code == 200
        await sub.received_at_least(
            2 + 4, within=10
        )  # 2 failed, 4 in flight (endpoint_concurrency), 6 unsent
        first.signal(signal.SIGKILL)
        assert await first.exited(within=10) == -signal.SIGKILL
        before_crash = len(sub.received)

        sub.then = Reply(200)
        second: RelayProcess = spawn("--config", str(config), "--port", str(first.port), port=first.port)
        await second.ready()
        await sub.received_at_least(before_crash + JOBS, within=15)
        async with second.client() as client:
            listed = (await client.get("/v1/deliveries", params={"limit": 100})).json()["deliveries"]

    delivered_after = sub.received[before_crash:]
    by_id: dict[str, list[Received]] = defaultdict(list)
    for request in sub.received:
        by_id[request.webhook_id].append(request)
    # None lost: every event reached the subscriber after the restart, and the relay knows them delivered.
    assert len(listed) == JOBS and {d["status"] for d in listed} == {"delivered"}
    assert {d["event_id"] for d in listed} == {r.webhook_id for r in delivered_after} == set(by_id)
    # At least once: the requests in flight at the kill went again, as the same message.
    assert any(len(requests) > 1 for requests in by_id.values())
    for requests in by_id.values():
        assert len({orjson.dumps(r.verify(secret)) for r in requests}) == 1
