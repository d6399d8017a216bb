"""Progress over HTTP, on every backend: `job.progress` on the event stream and the job object, deliveries to
the subscriptions that name it, and a storm of updates coalesced, never overtaking the result."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx
import orjson

from relay.delivery import Deliverer
from tests.conftest import Clock, LiveRelay, Relay, open_relay, wait_for
from tests.integration.conftest import SettingsWith
from tests.subscriber import Received, Reply, subscriber

SIGNING_SECRET = "whsec_c2lnbmluZy1zZWNyZXQtZm9yLXRlc3Rz"


def body(status: str, step: int | None = None, job_id: str = "j1") -> bytes:
    """A worker's callback (the demo source keeps the whole body as its payload)."""
    return orjson.dumps({"id": job_id, "status": status, **({} if step is None else {"step": step})})


async def post(relay: Relay, payload: bytes, clock: Clock | None = None) -> dict[str, Any]:
    """Post one callback (a fresh webhook-id each time) and answer relay's JSON."""
    response = await relay.post_callback("demo", payload, timestamp=None if clock is None else clock.now)
    assert response.status_code == 200, response.text
    return response.json()  # type: ignore[no-any-return]


async def follow(response: httpx.Response, into: list[dict[str, Any]]) -> None:
    """Append each message of an SSE stream to `into` as it comes: its `event` and its parsed `data`."""
    current: dict[str, str] = {}
    async for line in response.aiter_lines():
        if not line and current:
            into.append({"event": current["event"], "data": orjson.loads(current["data"])})
            current = {}
        elif line and not line.startswith(":"):
            field, _, value = line.partition(": ")
            current[field] = value


async def test_progress_reaches_the_stream_and_a_repeat_does_not(live_relay: LiveRelay) -> None:
    """Each new payload is one `job.progress` message carrying it; the same payload again sends nothing."""
    relay = live_relay
    got: list[dict[str, Any]] = []
    async with relay.client.stream("GET", "/v1/jobs/demo/j1/events") as response:
        reading = asyncio.create_task(follow(response, got))
        await wait_for(lambda: relay.services.hub.count == 1)
        await post(relay, body("running", 1))
        await wait_for(lambda: len(got) == 1)
        repeat = await post(relay, body("running", 1))  # another webhook-id, the same payload
        assert not repeat["duplicate"]
        assert len(await relay.services.store.list_events("demo", "j1")) == 1
        await post(relay, body("running", 2))
        await wait_for(lambda: len(got) == 2)
        await post(relay, body("succeeded"))
        await asyncio.wait_for(reading, 10)
    assert [(m["event"], m["data"]["type"]) for m in got] == [
        ("job.running", "job.running"),
        ("job.progress", "job.progress"),
        ("job.succeeded", "job.succeeded"),
    ]
    assert [m["data"]["data"]["progress"] for m in got] == [
        orjson.loads(body("running", 1)),
        orjson.loads(body("running", 2)),
        orjson.loads(body("running", 2)),
    ]
    assert got[2]["data"]["data"]["result"] == orjson.loads(body("succeeded"))


async def test_the_job_object_keeps_the_latest_progress(relay: Relay) -> None:
    """The job shows the latest non-final payload while running, and keeps it beside its result."""
    job = (await relay.client.post("/v1/jobs", json={"source": "demo", "job_id": "j1"})).json()
    assert job["progress"] is None
    for step in (1, 2, 3):
        await post(relay, body("running", step))
    job = (await relay.client.get("/v1/jobs/demo/j1")).json()
    assert (job["status"], job["progress"], job["result"]) == (
        "running",
        orjson.loads(body("running", 3)),
        None,
    )
    await post(relay, body("failed"))
    job = (await relay.client.get("/v1/jobs/demo/j1")).json()
    assert (job["status"], job["progress"]) == ("failed", orjson.loads(body("running", 3)))
    (listed,) = (await relay.client.get("/v1/jobs")).json()["jobs"]
    assert listed == job


async def test_a_burst_is_replayed_as_its_newest_progress(relay: Relay) -> None:
    """A stream that reads many updates at once sends the newest of them, in order before the result."""
    for step in range(50):
        await post(relay, body("running", step))
    await post(relay, body("succeeded"))
    assert len(await relay.services.store.list_events("demo", "j1")) == 51
    got: list[dict[str, Any]] = []
    async with relay.client.stream("GET", "/v1/jobs/demo/j1/events") as response:
        await asyncio.wait_for(follow(response, got), 10)
    assert [(m["event"], m["data"]["data"]["progress"]["step"]) for m in got] == [
        ("job.running", 0),
        ("job.progress", 49),
        ("job.succeeded", 49),
    ]


async def test_only_subscriptions_naming_progress_get_it_coalesced(settings_with: SettingsWith) -> None:
    """200 updates in a burst reach a subscription naming job.progress as one delivery, the newest; one
    naming no events, and a job's own subscriber, get the result only; nothing comes after the result."""
    clock = Clock()
    settings = settings_with(allow_private_destinations=True, signing_secret=SIGNING_SECRET)
    async with (
        subscriber() as wants,
        subscriber() as finals,
        subscriber() as own,
        open_relay(settings, clock, background=False) as relay,
    ):
        sub = (
            await relay.client.post(
                "/v1/subscriptions", json={"url": wants.url, "events": ["job.progress", "job.succeeded"]}
            )
        ).json()
        await relay.client.post("/v1/subscriptions", json={"url": finals.url})
        await relay.client.post("/v1/jobs", json={"source": "demo", "job_id": "j1", "subscribers": [own.url]})
        for step in range(200):
            await post(relay, body("running", step), clock)
        assert await deliver(relay, clock.now) == 1
        for step in range(200, 210):  # more, while the first went out
            await post(relay, body("running", step), clock)
        await post(relay, body("succeeded"), clock)
        while await deliver(relay, clock.now):
            pass
        sent = [(r.verify(sub["secret"])["type"], r.verify(sub["secret"])["data"]) for r in wants.received]
        assert [(kind, data["progress"]["step"]) for kind, data in sent] == [
            ("job.progress", 199),
            ("job.progress", 209),
            ("job.succeeded", 209),
        ]
        assert [orjson.loads(r.body)["type"] for r in finals.received] == ["job.succeeded"]
        assert [r.verify(SIGNING_SECRET)["type"] for r in own.received] == ["job.succeeded"]
        listed = (await relay.client.get("/v1/deliveries", params={"subscription_id": sub["id"]})).json()
        assert [d["status"] for d in listed["deliveries"]] == ["delivered"] * 3


async def deliver(relay: Relay, now: float) -> int:
    """One deliverer round at `now`, and the attempts it started, to the end."""
    deliverer = relay.services.loop(Deliverer)
    claimed = await deliverer.run_once(now)
    await deliverer.drain()
    return claimed


async def test_a_storm_to_a_slow_subscriber_is_bounded_and_ends_with_the_result(
    settings_with: SettingsWith,
) -> None:
    """With the deliverer running, a subscriber that takes 50 ms an answer gets at most one update per answer
    during a storm of 200, then the newest, then the result: it is not left 200 updates behind."""
    slow = Reply(delay=0.05)
    settings = settings_with(allow_private_destinations=True)
    async with subscriber(then=slow) as sub, open_relay(settings) as relay:
        events = ["job.progress", "job.succeeded"]
        await relay.client.post("/v1/subscriptions", json={"url": sub.url, "events": events})
        started = time.monotonic()
        for step in range(200):
            await post(relay, body("running", step))
        storm_s = time.monotonic() - started
        await post(relay, body("succeeded"))

        def ended(received: list[Received]) -> bool:
            return bool(received) and orjson.loads(received[-1].body)["type"] == "job.succeeded"

        await wait_for(lambda: ended(sub.received), within=5)
        types_and_steps = [
            (doc["type"], doc["data"]["progress"]["step"])
            for doc in (orjson.loads(r.body) for r in sub.received)
        ]
    *updates, last = types_and_steps
    assert last == ("job.succeeded", 199) and updates[-1] == ("job.progress", 199)
    steps = [step for _, step in updates]
    assert steps == sorted(set(steps))  # in order, each once
    # Serial per job and subscriber, 50 ms each: what the storm's time allows, plus the newest.
    assert len(updates) <= storm_s / 0.05 + 2, (len(updates), storm_s)
