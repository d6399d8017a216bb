"""The SSE status stream: read as it comes over real HTTP, or whole once a final job's stream has closed."""

from __future__ import annotations

import asyncio

import httpx
import orjson

from tests.conftest import LiveRelay, Relay, start_relay, wait_for
from tests.integration.conftest import SettingsWith


async def read_messages(response: httpx.Response) -> list[dict[str, str]]:
    """Parse the whole stream into messages (comments become {"comment": ...})."""
    messages: list[dict[str, str]] = []
    current: dict[str, str] = {}
    async for line in response.aiter_lines():
        if not line:
            if current:
                messages.append(current)
            current = {}
        elif line.startswith(":"):
            messages.append({"comment": line[1:].strip()})
        else:
            field, _, value = line.partition(": ")
            current[field] = value
    return messages


async def post(relay: Relay, status: str, job_id: str = "j1") -> None:
    response = await relay.post_callback("demo", orjson.dumps({"id": job_id, "status": status}))
    assert response.status_code == 200


async def test_stream_sends_each_change_and_closes_after_final(live_relay: LiveRelay) -> None:
    """Each status change is one message with an id; the stream ends after the final state."""
    relay = live_relay
    async with relay.client.stream("GET", "/v1/jobs/demo/j1/events") as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        reading = asyncio.create_task(read_messages(response))
        await wait_for(lambda: relay.services.hub.count == 1)
        await post(relay, "processing")
        await post(relay, "processing")  # no change, no message
        await post(relay, "succeeded")
        messages = await asyncio.wait_for(reading, 10)
    assert [m["event"] for m in messages] == ["job.running", "job.succeeded"]
    bodies = [orjson.loads(m["data"]) for m in messages]
    assert bodies[1]["type"] == "job.succeeded" and bodies[1]["data"]["status"] == "succeeded"
    assert int(messages[0]["id"]) < int(messages[1]["id"])
    assert relay.services.hub.count == 0


async def test_stream_resumes_after_last_event_id(relay: Relay) -> None:
    """Last-Event-ID replays only what came after it; a finished job's stream closes at once."""
    await post(relay, "processing")
    await post(relay, "failed")
    events = await relay.services.store.list_events("demo", "j1")
    async with relay.client.stream(
        "GET", "/v1/jobs/demo/j1/events", headers={"last-event-id": str(events[0].id)}
    ) as response:
        messages = await asyncio.wait_for(read_messages(response), 10)
    assert [m["event"] for m in messages] == ["job.failed"]
    async with relay.client.stream(
        "GET", "/v1/jobs/demo/j1/events", headers={"last-event-id": str(events[1].id)}
    ) as response:
        assert await asyncio.wait_for(read_messages(response), 10) == []


async def test_heartbeat_comments_keep_a_quiet_stream_open(settings_with: SettingsWith) -> None:
    """A quiet stream sends a heartbeat comment every sse_heartbeat_s."""
    async with start_relay(settings_with(sse_heartbeat_s=0.05)) as relay:
        async with relay.client.stream("GET", "/v1/jobs/demo/j1/events") as response:
            lines = response.aiter_lines()
            assert await asyncio.wait_for(anext(lines), 10) == ": heartbeat"


async def test_stream_with_ticket_and_refusals(relay: Relay) -> None:
    """A ticket opens its own job's stream; another job's ticket, no key and a bad id are refused."""
    ticket = (await relay.client.post("/v1/jobs", json={"source": "demo", "job_id": "j1"})).json()["ticket"]
    await post(relay, "succeeded")
    async with relay.anonymous() as anonymous:
        async with anonymous.stream("GET", "/v1/jobs/demo/j1/events", params={"ticket": ticket}) as own:
            messages = await asyncio.wait_for(read_messages(own), 10)
        other = await anonymous.get("/v1/jobs/demo/j2/events", params={"ticket": ticket})
        none = await anonymous.get("/v1/jobs/demo/j1/events")
    assert [m["event"] for m in messages] == ["job.succeeded"]
    assert other.status_code == 403 and none.status_code == 401
    bad = await relay.client.get("/v1/jobs/demo/j1/events", headers={"last-event-id": "x"})
    assert bad.status_code == 400


async def test_client_leaving_a_stream_frees_its_waiter(live_relay: LiveRelay) -> None:
    """Closing the stream releases its hub subscription."""
    relay = live_relay
    async with relay.client.stream("GET", "/v1/jobs/demo/j1/events"):
        await wait_for(lambda: relay.services.hub.count == 1)
    await wait_for(lambda: relay.services.hub.count == 0)


async def test_callback_history_endpoint(relay: Relay) -> None:
    """/callbacks lists each accepted callback with its delivery ID, time, status and via; 404 if unknown."""
    await relay.post_callback("demo", orjson.dumps({"id": "j1", "status": "processing"}), msg_id="m1")
    await relay.post_callback("demo", orjson.dumps({"id": "j1", "status": "succeeded"}), msg_id="m2")
    history = (await relay.client.get("/v1/jobs/demo/j1/callbacks")).json()["callbacks"]
    assert [(h["delivery_id"], h["status"], h["via"]) for h in history] == [
        ("m1", "running", "webhook"),
        ("m2", "succeeded", "webhook"),
    ] and all(h["received_at"].endswith("Z") for h in history)
    assert (await relay.client.get("/v1/jobs/demo/nope/callbacks")).status_code == 404
