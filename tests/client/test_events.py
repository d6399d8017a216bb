"""`events()` against a real relay over HTTP: each event once and in order, across a dropped connection,
ending after the final state (or at once on a finished job's 204)."""

from __future__ import annotations

import asyncio

from relay.client import AsyncClient, Client, Event
from tests.client.conftest import port_of, post_status
from tests.client.proxy import tcp_proxy
from tests.conftest import API_KEY, LiveRelay, wait_for


async def collect(
    client: AsyncClient, job_id: str, into: list[Event], last_event_id: int | None = None
) -> None:
    async for event in client.events("demo", job_id, last_event_id=last_event_id):
        into.append(event)


async def test_events_follow_the_job_until_its_final_state(
    live_relay: LiveRelay, client: AsyncClient
) -> None:
    """Each status change arrives as it happens, with the job; the iteration ends after the final one."""
    events: list[Event] = []
    following = asyncio.create_task(collect(client, "j1", events))
    await wait_for(lambda: live_relay.services.hub.count == 1)
    await post_status(live_relay, "j1", "processing")
    await wait_for(lambda: len(events) == 1)
    await post_status(live_relay, "j1", "succeeded")
    await asyncio.wait_for(following, 10)
    assert [e.type for e in events] == ["job.running", "job.succeeded"]
    assert [e.job.status for e in events] == ["running", "succeeded"]
    assert events[0].id < events[1].id and events[1].event_id.startswith("evt_")
    assert events[1].job.is_final and not events[0].job.is_final


async def test_events_resume_after_a_dropped_connection_without_repeating_or_skipping(
    live_relay: LiveRelay,
) -> None:
    """The connection is cut after the first event and relay cannot be reached while the job finishes: the
    client reconnects with Last-Event-ID and gets the rest, each event exactly once."""
    events: list[Event] = []
    async with (
        tcp_proxy(port_of(live_relay.base_url)) as proxy,
        AsyncClient(proxy.url, api_key=API_KEY) as client,
    ):
        following = asyncio.create_task(collect(client, "j1", events))
        await wait_for(lambda: live_relay.services.hub.count == 1)
        await post_status(live_relay, "j1", "processing")
        await wait_for(lambda: len(events) == 1)
        proxy.refusing = True
        proxy.drop()
        await wait_for(lambda: live_relay.services.hub.count == 0)
        await post_status(live_relay, "j1", "failed")  # while the stream is down
        proxy.refusing = False
        await asyncio.wait_for(following, 10)
    stored = await live_relay.services.store.list_events("demo", "j1")
    assert [(e.id, e.type) for e in events] == [(e.id, e.type) for e in stored]
    assert [e.type for e in events] == ["job.running", "job.failed"]
    assert proxy.requests_with(f"last-event-id: {events[0].id}") == 1


async def test_events_of_a_finished_job_replay_what_follows_and_stop(
    live_relay: LiveRelay, client: AsyncClient
) -> None:
    """A finished job's stream replays the events after `last_event_id`, and nothing (a 204) after its end."""
    await post_status(live_relay, "done", "processing")
    await post_status(live_relay, "done", "succeeded")
    everything: list[Event] = []
    await asyncio.wait_for(collect(client, "done", everything), 10)
    assert [e.type for e in everything] == ["job.running", "job.succeeded"]
    rest: list[Event] = []
    await asyncio.wait_for(collect(client, "done", rest, last_event_id=everything[0].id), 10)
    assert rest == everything[1:]
    after_end: list[Event] = []
    await asyncio.wait_for(collect(client, "done", after_end, last_event_id=everything[-1].id), 10)
    assert after_end == []


async def test_the_sync_client_follows_events_too(live_relay: LiveRelay) -> None:
    """Client.events (blocking, here in a thread) yields the same events and ends."""
    await post_status(live_relay, "s1", "processing")

    def follow() -> list[str]:
        with Client(live_relay.base_url, api_key=API_KEY) as client:
            return [event.type for event in client.events("demo", "s1")]

    following = asyncio.create_task(asyncio.to_thread(follow))
    await wait_for(lambda: live_relay.services.hub.count == 1)
    await post_status(live_relay, "s1", "canceled")
    assert await asyncio.wait_for(following, 10) == ["job.running", "job.canceled"]
