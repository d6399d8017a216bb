"""CORS (`cors_origins`): a page on a listed origin reads a job, its long-poll and its stream with the job's
ticket; API keys are refused from pages on other origins; a stream that can send nothing more answers 204."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from relay.cors import check_origins, cors_middleware
from relay.errors import ConfigError
from tests.conftest import Relay, make_settings, open_relay, wait_for

ORIGIN = "https://app.example"
OTHER = "https://evil.example"
JOB = "/v1/jobs/demo/j1"
EVENTS = "/v1/jobs/demo/j1/events"


@pytest.fixture
async def relay(tmp_path: Path) -> AsyncIterator[Relay]:
    """A relay whose `cors_origins` lists ORIGIN (SQLite: CORS is the HTTP layer's, the same on any store)."""
    async with open_relay(make_settings(tmp_path, cors_origins=[ORIGIN])) as opened:
        yield opened


async def ticket_for(relay: Relay, job_id: str = "j1") -> str:
    """Register `job_id` with the API key; its ticket."""
    registered = await relay.client.post("/v1/jobs", json={"source": "demo", "job_id": job_id})
    ticket: str = registered.json()["ticket"]
    return ticket


async def post(relay: Relay, status: str, job_id: str = "j1") -> None:
    response = await relay.post_callback("demo", orjson.dumps({"id": job_id, "status": status}))
    assert response.status_code == 200


def cors_headers(response: httpx.Response) -> dict[str, str]:
    return {name: value for name, value in response.headers.items() if name.startswith("access-control-")}


async def preflight(
    client: httpx.AsyncClient, path: str, origin: str, headers: str = "", method: str = "GET"
) -> httpx.Response:
    """The OPTIONS request a browser sends before a request that is not simple."""
    asked = {"origin": origin, "access-control-request-method": method}
    if headers:
        asked["access-control-request-headers"] = headers
    return await client.options(path, headers=asked)


async def test_preflights_from_a_listed_origin_are_answered(relay: Relay) -> None:
    """A listed origin's preflight for a job read or its stream is allowed, with the headers a page sends."""
    async with relay.anonymous() as page:
        stream = await preflight(page, EVENTS, ORIGIN, "last-event-id")
        read = await preflight(page, JOB, ORIGIN, "authorization, prefer")
    for answer in (stream, read):
        assert answer.status_code == 200
        assert answer.headers["access-control-allow-origin"] == ORIGIN
        assert answer.headers["access-control-allow-methods"] == "GET"
        assert "access-control-allow-credentials" not in answer.headers  # tickets and keys, never cookies
    allowed = stream.headers["access-control-allow-headers"].lower()
    assert {"authorization", "last-event-id", "prefer"} <= set(allowed.split(", "))


async def test_preflights_are_refused_for_other_origins_methods_and_routes(relay: Relay) -> None:
    """No Access-Control-Allow-Origin for an unlisted origin, another method, or a route beyond job reads."""
    async with relay.anonymous() as page:
        unlisted = await preflight(page, EVENTS, OTHER, "last-event-id")
        null = await preflight(page, JOB, "null")
        cancel = await preflight(page, JOB, ORIGIN, method="DELETE")
        register = await preflight(page, "/v1/jobs", ORIGIN, "authorization, content-type", "POST")
        listing = await preflight(page, "/v1/jobs", ORIGIN, "authorization")
    assert unlisted.status_code == null.status_code == cancel.status_code == 400
    assert (
        "access-control-allow-origin" not in unlisted.headers
        and "access-control-allow-origin" not in null.headers
    )
    assert register.status_code == listing.status_code == 405
    assert not cors_headers(register) and not cors_headers(listing)


async def test_job_reads_carry_cors_headers_for_a_listed_origin_only(relay: Relay) -> None:
    """What a ticket reads (the job, its long-poll, stream and history) allows the listed origin, no other."""
    ticket = await ticket_for(relay)
    await post(relay, "processing")
    async with relay.anonymous() as page:
        waiting = asyncio.create_task(
            page.get(JOB, params={"ticket": ticket}, headers={"origin": ORIGIN, "prefer": "wait=30"})
        )
        await wait_for(lambda: relay.services.hub.count == 1)
        await post(relay, "succeeded")
        long_poll = await asyncio.wait_for(waiting, 10)
        reads = {
            origin: (
                await page.get(JOB, params={"ticket": ticket}, headers={"origin": origin}),
                await page.get(EVENTS, params={"ticket": ticket}, headers={"origin": origin}),
                await page.get(f"{JOB}/callbacks", params={"ticket": ticket}, headers={"origin": origin}),
            )
            for origin in (ORIGIN, OTHER)
        }
    assert long_poll.json()["status"] == "succeeded" and long_poll.headers["preference-applied"] == "wait=30"
    assert long_poll.headers["access-control-allow-origin"] == ORIGIN
    assert long_poll.headers["access-control-expose-headers"] == "Preference-Applied"
    read, stream, history = reads[ORIGIN]
    assert read.status_code == stream.status_code == history.status_code == 200
    assert stream.headers["content-type"].startswith("text/event-stream") and "job.succeeded" in stream.text
    for answer in reads[ORIGIN]:
        assert answer.headers["access-control-allow-origin"] == ORIGIN and "Origin" in answer.headers["vary"]
    # The ticket still reads from anywhere (a server may hold it), but no page on OTHER may see the answer.
    for answer in reads[OTHER]:
        assert answer.status_code == 200 and "Origin" in answer.headers["vary"]
        assert "access-control-allow-origin" not in answer.headers


async def test_no_cors_headers_at_all_without_cors_origins(tmp_path: Path) -> None:
    """By default no preflight is answered and no response carries a CORS header."""
    async with open_relay(make_settings(tmp_path)) as relay:
        ticket = await ticket_for(relay)
        await post(relay, "succeeded")
        async with relay.anonymous() as page:
            asked = await preflight(page, EVENTS, ORIGIN, "last-event-id")
            read = await page.get(JOB, params={"ticket": ticket}, headers={"origin": ORIGIN})
            stream = await page.get(EVENTS, params={"ticket": ticket}, headers={"origin": ORIGIN})
    assert asked.status_code == 405 and read.status_code == stream.status_code == 200
    assert not cors_headers(asked) | cors_headers(read) | cors_headers(stream)


async def test_api_key_from_a_page_on_an_unlisted_origin_is_refused(relay: Relay) -> None:
    """Bearer + an Origin not listed (or `null`): 403 before anything is done; listed or no Origin: taken."""
    await ticket_for(relay)
    refused = [
        await relay.client.get(JOB, headers={"origin": OTHER}),
        await relay.client.get("/v1/jobs", headers={"origin": "null"}),
        await relay.client.post(
            "/v1/jobs", json={"source": "demo", "job_id": "j2"}, headers={"origin": OTHER}
        ),
        await relay.client.get(JOB, headers={"origin": OTHER, "authorization": "Bearer wrong-key"}),
    ]
    for answer in refused:
        assert answer.status_code == 403 and answer.json()["error"]["code"] == "origin_refused"
        assert "access-control-allow-origin" not in answer.headers
    assert await relay.services.store.get_job("demo", "j2") is None
    listed = await relay.client.get(JOB, headers={"origin": ORIGIN})
    assert listed.status_code == 200 and listed.headers["access-control-allow-origin"] == ORIGIN
    assert (await relay.client.get(JOB)).status_code == 200  # servers send no Origin


async def test_api_keys_take_no_origin_by_default(tmp_path: Path) -> None:
    """With `cors_origins` empty every page's origin is unlisted: a key sent with any Origin is refused."""
    async with open_relay(make_settings(tmp_path)) as relay:
        refused = await relay.client.get("/v1/jobs", headers={"origin": ORIGIN})
        taken = await relay.client.get("/v1/jobs")
    assert refused.status_code == 403 and refused.json()["error"]["code"] == "origin_refused"
    assert taken.status_code == 200


async def test_stream_answers_204_once_nothing_can_follow_last_event_id(relay: Relay) -> None:
    """Last-Event-ID at or past a final job's last event: 204 (EventSource stops); before it: the rest."""
    ticket = await ticket_for(relay)
    await post(relay, "processing")
    await post(relay, "succeeded")
    running, succeeded = await relay.services.store.list_events("demo", "j1")
    async with relay.anonymous() as page:

        async def resume(last: int, **params: str) -> httpx.Response:
            headers = {"origin": ORIGIN} if params else {"origin": ORIGIN, "last-event-id": str(last)}
            return await page.get(EVENTS, params={"ticket": ticket, **params}, headers=headers)

        before = await resume(running.id)
        at = await resume(succeeded.id)
        past = await resume(succeeded.id + 1000)
        by_query = await resume(0, last_event_id=str(succeeded.id))
    assert before.status_code == 200 and before.headers["content-type"].startswith("text/event-stream")
    assert f"id: {succeeded.id}\nevent: job.succeeded\n" in before.text and "job.running" not in before.text
    for answer in (at, past, by_query):
        assert answer.status_code == 204 and answer.content == b""
        assert answer.headers["access-control-allow-origin"] == ORIGIN  # else the browser sees an error


async def test_a_job_not_final_streams_on_after_its_last_event_id(relay: Relay) -> None:
    """Resuming a job that is not final holds the stream open (200) and sends what comes next."""
    await post(relay, "processing")
    [running] = await relay.services.store.list_events("demo", "j1")
    # The in-process client has the answer once the stream ends: the job is made final while it waits.
    streaming = asyncio.create_task(relay.client.get(EVENTS, headers={"last-event-id": str(running.id)}))
    await wait_for(lambda: relay.services.hub.count == 1)
    await post(relay, "failed")
    answer = await asyncio.wait_for(streaming, 10)
    assert (
        answer.status_code == 200 and "event: job.failed" in answer.text and "job.running" not in answer.text
    )


@pytest.mark.parametrize(
    "origins",
    [[], ["https://app.example"], ["http://127.0.0.1:5173", "http://[::1]:8080", "chrome-extension://abc"]],
)
def test_origins_as_a_browser_sends_them_are_taken(origins: list[str]) -> None:
    """Each origin is kept exactly as listed."""
    assert check_origins(origins) == tuple(origins)


@pytest.mark.parametrize(
    ("origins", "message"),
    [
        ("https://app.example", "expected a list of origins"),
        ([None], "expected a list of origins"),
        (["*"], "'*' is refused"),
        (["https://app.example/"], "write 'https://app.example'"),
        (["https://App.Example"], "write 'https://app.example'"),
        (["https://app.example:443"], "write 'https://app.example'"),
        (["http://app.example:8080/"], "write 'http://app.example:8080'"),
        (["https://app.example/ui"], "is not an origin"),
        (["https://user@app.example"], "is not an origin"),
        (["app.example"], "is not an origin"),
        (["null"], "is not an origin"),
        (["https://app.example:99999"], "is not an origin"),
    ],
)
def test_anything_but_an_origin_is_refused_naming_the_key(origins: Any, message: str, tmp_path: Path) -> None:
    """A non-origin stops the config with a message naming cors_origins, and the origin meant where it can
    tell (a trailing slash, capitals, a default port), never for a path or a user."""
    with pytest.raises(ConfigError, match=r"^cors_origins: ") as refused:
        make_settings(tmp_path, cors_origins=origins)
    assert message in str(refused.value)
    assert ("write '" in str(refused.value)) == message.startswith("write")


def test_cors_needs_the_routes_it_covers() -> None:
    """No middleware without origins; with origins, a covered route missing stops the app's build."""
    assert cors_middleware([], []) == []
    with pytest.raises(RuntimeError, match="CORS routes not found"):
        cors_middleware([ORIGIN], [])
