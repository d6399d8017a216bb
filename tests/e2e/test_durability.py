"""Durability: every acknowledged callback survives a SIGKILL of `relay serve` mid-load."""

from __future__ import annotations

import asyncio
import signal
from collections import defaultdict
from collections.abc import Awaitable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import httpx
import orjson

from tests.conftest import DEMO_SECRET, signed_headers, wait_for
from tests.e2e.conftest import RelayProcess, write_config

SENDERS = 12
KILL_AFTER_ACKED_FINALS = 300
T = TypeVar("T")


async def _gather(awaitables: Iterable[Awaitable[T]], limit: int = 4) -> list[T]:
    """Await all, a few at a time (a handful of connections reads fastest on a small machine)."""
    semaphore = asyncio.Semaphore(limit)

    async def one(awaitable: Awaitable[T]) -> T:
        async with semaphore:
            return await awaitable

    return await asyncio.gather(*(one(a) for a in awaitables))


@dataclass
class Sent:
    """One callback a sender posted, and what became of it."""

    job_id: str
    delivery_id: str
    status: str
    doc: dict[str, Any]
    body: bytes
    acked: bool = False
    lost: BaseException | None = None

    @property
    def final(self) -> bool:
        return self.status != "running"


def _callbacks_for(sender: int, seq: int) -> list[Sent]:
    """A job's callbacks: some jobs report `running` first; one in five fails, the rest succeed."""
    job_id = f"s{sender}-j{seq}"
    statuses = (["running"] if seq % 3 == 0 else []) + ["failed" if seq % 5 == 4 else "succeeded"]
    sent = []
    for status in statuses:
        doc: dict[str, Any] = {"id": job_id, "status": status, "sender": sender, "seq": seq}
        if status == "succeeded":
            doc["output"] = [f"https://cdn.example.com/{job_id}.png"]
        elif status == "failed":
            doc["error"] = f"out of memory on {job_id}"
        sent.append(Sent(job_id, f"msg_{job_id}_{status}", status, doc, orjson.dumps(doc)))
    return sent


async def _send_until_lost(sender: int, base_url: str, ledger: list[Sent]) -> None:
    """Post callbacks back to back, recording each 200, until the server goes away."""
    async with httpx.AsyncClient(base_url=base_url, timeout=10) as client:
        seq = 0
        while True:
            for record in _callbacks_for(sender, seq):
                ledger.append(record)
                headers = signed_headers(DEMO_SECRET, record.body, msg_id=record.delivery_id)
                try:
                    response = await client.post("/hooks/demo", content=record.body, headers=headers)
                except httpx.TransportError as exc:
                    record.lost = exc
                    return
                assert response.status_code == 200, response.text
                assert response.json() == {
                    "accepted": True,
                    "source": "demo",
                    "job_id": record.job_id,
                    "duplicate": False,
                }
                record.acked = True
            seq += 1


def _expected(record: Sent) -> dict[str, Any]:
    """The job fields a stored final callback must have left."""
    return {
        "status": record.status,
        "result": record.doc,
        "error": record.doc.get("error"),
        "late": False,
    }


async def test_acknowledged_callbacks_survive_sigkill(tmp_path: Path, spawn: Any) -> None:
    """SIGKILL under concurrent load, restart: every 200-acknowledged callback is stored whole."""
    config = write_config(tmp_path / "relay.toml")
    first: RelayProcess = spawn("--config", str(config))
    await first.ready()

    ledger: list[Sent] = []
    senders = [asyncio.create_task(_send_until_lost(n, first.base_url, ledger)) for n in range(SENDERS)]

    def enough_acked_or_a_sender_stopped() -> bool:
        acked_finals = sum(r.acked and r.final for r in ledger)
        return acked_finals >= KILL_AFTER_ACKED_FINALS or any(t.done() for t in senders)

    try:
        await wait_for(enough_acked_or_a_sender_stopped, within=20)
        for task in senders:
            if task.done():
                task.result()  # a sender that stopped early failed an assertion: show it
        first.signal(signal.SIGKILL)
        assert await first.exited(within=10) == -signal.SIGKILL
        await asyncio.wait_for(asyncio.gather(*senders), timeout=15)
    finally:
        for task in senders:
            task.cancel()

    in_flight = [r for r in ledger if r.lost is not None and not isinstance(r.lost, httpx.ConnectError)]
    assert in_flight, "no request was in flight when the server was killed"
    acked = [r for r in ledger if r.acked]
    by_job: dict[str, list[Sent]] = defaultdict(list)
    for record in ledger:
        by_job[record.job_id].append(record)

    second: RelayProcess = spawn("--config", str(config), "--port", str(first.port), port=first.port)
    await second.ready()
    async with second.client() as client:
        # Every job that has an acknowledged callback, read one by one.
        acked_jobs = sorted({r.job_id for r in acked})
        answers = await _gather(client.get(f"/v1/jobs/demo/{job_id}") for job_id in acked_jobs)
        jobs = {}
        for job_id, answer in zip(acked_jobs, answers, strict=True):
            assert answer.status_code == 200, f"acknowledged job {job_id} is missing: {answer.text}"
            jobs[job_id] = answer.json()

        # Every stored job, acknowledged or not, from the list.
        listed: dict[str, dict[str, Any]] = {}
        cursor = None
        while True:
            params = {"source": "demo", "limit": 500, **({"cursor": cursor} if cursor else {})}
            page = (await client.get("/v1/jobs", params=params)).json()
            listed.update({job["job_id"]: job for job in page["jobs"]})
            if (cursor := page["next_cursor"]) is None:
                break
        assert set(jobs) <= set(listed)
        histories = await _gather(client.get(f"/v1/jobs/demo/{j}/callbacks") for j in listed)

        for (job_id, job), history in zip(listed.items(), histories, strict=True):
            assert job_id in by_job, f"a job nobody sent: {job_id}"
            sent = by_job[job_id]
            stored_ids = [entry["delivery_id"] for entry in history.json()["callbacks"]]
            assert job["callbacks"] == len(stored_ids)
            assert set(stored_ids) <= {r.delivery_id for r in sent}
            assert {r.delivery_id for r in sent if r.acked} <= set(stored_ids)
            final = sent[-1]
            if final.delivery_id in stored_ids:  # stored, acknowledged or not: whole
                assert {k: job[k] for k in ("status", "result", "error", "late")} == _expected(final)
                assert job["finished_at"] is not None
            else:
                assert job["status"] == "running" and job["result"] is None and job["finished_at"] is None
            if final.acked:
                assert jobs[job_id] == job

        # A redelivery of an acknowledged callback is known after the restart; nothing changes.
        for record in (acked[0], acked[-1], *[r for r in acked if not r.final][:1]):
            headers = signed_headers(DEMO_SECRET, record.body, msg_id=record.delivery_id)
            again = await client.post("/hooks/demo", content=record.body, headers=headers)
            assert again.status_code == 200
            assert again.json() == {
                "accepted": True,
                "source": "demo",
                "job_id": record.job_id,
                "duplicate": True,
            }
            assert (await client.get(f"/v1/jobs/demo/{record.job_id}")).json() == listed[record.job_id]

        # And the restarted relay takes new callbacks.
        fresh = orjson.dumps({"id": "after-restart", "status": "succeeded"})
        answer = await client.post("/hooks/demo", content=fresh, headers=signed_headers(DEMO_SECRET, fresh))
        assert answer.json()["duplicate"] is False
