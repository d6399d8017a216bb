"""The parts the sync and async clients share: job IDs in paths, error answers mapped to typed errors, the
event-stream decoder, tickets, and jobs() paging through every page."""

from __future__ import annotations

import asyncio

import pytest

from relay.client import (
    AlreadyFinal,
    AsyncClient,
    AuthError,
    CancelUnsupported,
    Client,
    Conflict,
    Forbidden,
    NotFound,
    RelayError,
    Unauthorized,
    Unavailable,
)
from relay.client.errors import error_from_answer
from relay.client.streaming import SseDecoder
from tests.client.conftest import post_status
from tests.conftest import API_KEY, LiveRelay


async def test_any_job_id_reads_back(client: AsyncClient) -> None:
    """Slashes, percent signs, dot segments, spaces and query characters stay one path segment."""
    for job_id in ["a/b", "100%", ".", "..", "sp ace?#", "ünï"]:
        registered = await client.register("demo", job_id)
        assert registered.job_id == job_id
        assert (await client.get("demo", job_id)).job_id == job_id


async def test_a_ticket_reads_its_own_job_only(live_relay: LiveRelay, client: AsyncClient) -> None:
    """A client holding a job's ticket (no key) reads and waits for that job; anything else is refused."""
    job = await client.register("demo", "mine")
    await post_status(live_relay, "mine", "succeeded")
    assert job.ticket is not None
    async with AsyncClient(live_relay.base_url, ticket=job.ticket) as ticketed:
        assert (await ticketed.wait("demo", "mine", timeout=5)).status == "succeeded"
        with pytest.raises(Forbidden) as raised:
            await ticketed.get("demo", "other")
        assert raised.value.code == "ticket_scope" and raised.value.status_code == 403
        with pytest.raises(AuthError):
            await ticketed.register("demo", "new")


async def test_jobs_pages_through_every_job(live_relay: LiveRelay) -> None:
    """jobs() follows next_cursor to the last page: every job once, newest first."""
    for n in range(7):
        await post_status(live_relay, f"p{n}", "succeeded")

    def listed() -> list[str]:
        with Client(live_relay.base_url, api_key=API_KEY) as client:
            return [job.job_id for job in client.jobs(source="demo", page_size=3)]

    newest_first = [f"p{n}" for n in reversed(range(7))]
    assert await asyncio.to_thread(listed) == newest_first
    async with AsyncClient(live_relay.base_url, api_key=API_KEY) as client:
        assert [job.job_id async for job in client.jobs(status="succeeded", page_size=2)] == newest_first


async def test_errors_are_typed_with_code_status_and_message(live_relay: LiveRelay) -> None:
    """A wrong key is Unauthorized, an unknown job NotFound, each with relay's code and message."""
    async with AsyncClient(live_relay.base_url, api_key="wrong") as client:
        with pytest.raises(Unauthorized) as raised:
            await client.get("demo", "x")
    assert (raised.value.status_code, raised.value.code) == (401, "bad_api_key")
    async with AsyncClient(live_relay.base_url, api_key=API_KEY) as client:
        with pytest.raises(NotFound) as missing:
            await client.get("demo", "x")
    assert missing.value.code == "unknown_job" and "'x'" in missing.value.message


def test_error_answers_map_to_their_classes() -> None:
    """409s by code (cancel), 5xx to Unavailable, a proxy's HTML page by its status, others RelayError."""
    cases = {
        (409, b'{"error": {"code": "cancel_unsupported", "message": "no cancel API"}}'): CancelUnsupported,
        (409, b'{"error": {"code": "already_final", "message": "it ended"}}'): AlreadyFinal,
        (409, b'{"error": {"code": "in_flight", "message": "sending"}}'): Conflict,
        (503, b'{"error": {"code": "shutting_down", "message": "stopping"}}'): Unavailable,
        (502, b"<html>Bad Gateway</html>"): Unavailable,
        (418, b"{}"): RelayError,
    }
    for (status, body), cls in cases.items():
        error = error_from_answer(status, body)
        assert type(error) is cls and error.status_code == status
    proxy_page = error_from_answer(502, b"<html>Bad Gateway</html>")
    assert proxy_page.code == "http_502" and proxy_page.message == "<html>Bad Gateway</html>"


async def test_cancel_where_the_kind_has_no_cancel_api_raises_cancel_unsupported(client: AsyncClient) -> None:
    """A standard-webhooks source has no provider to ask: 409 cancel_unsupported, as CancelUnsupported."""
    await client.register("demo", "c1")
    with pytest.raises(CancelUnsupported) as raised:
        await client.cancel("demo", "c1")
    assert raised.value.status_code == 409


def test_the_event_stream_decoder_follows_the_sse_rules() -> None:
    """Comments and unknown fields are skipped, data lines join, a blank line ends a message, the id stays."""
    decoder = SseDecoder()
    lines = [": heartbeat", "", "id: 3", "event: job.running", "data: {", "data: }", "retry: 10", ""]
    messages = [m for line in lines if (m := decoder.feed(line)) is not None]
    assert messages == [("3", "job.running", "{\n}")]
    assert decoder.feed("data:x") is None and decoder.feed("") == ("3", "message", "x")
