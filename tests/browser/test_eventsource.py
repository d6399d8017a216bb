"""A real browser page on a listed origin follows a job with its ticket: EventSource and a long-poll fetch,
then no more reconnecting once the stream has sent the final event (the relay answers the reconnect 204)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import quote

import orjson
import pytest

from tests.browser.conftest import serve_page
from tests.conftest import LiveRelay, Relay, make_settings, start_relay, wait_for

if TYPE_CHECKING:
    from playwright.async_api import Browser, Request, Response

pytestmark = pytest.mark.browser

# Chromium waits 3 s before reconnecting a closed stream, so the close takes that long to be seen.
WITHIN_MS = 8_000

PAGE = """<!doctype html>
<meta charset="utf-8"><title>a page on another origin</title>
<script>
  window.received = [];
  window.follow = (streamUrl) => {
    window.source = new EventSource(streamUrl);
    for (const type of ["job.running", "job.succeeded"]) {
      window.source.addEventListener(type, (e) => window.received.push(
        {type: e.type, id: e.lastEventId, status: JSON.parse(e.data).data.status}));
    }
  };
  window.longPoll = async (jobUrl) => {
    // Prefer is not a safelisted header: the browser sends a preflight first.
    const answer = await fetch(jobUrl, {headers: {Prefer: "wait=30"}});
    window.polled = {code: answer.status, applied: answer.headers.get("Preference-Applied"),
                     status: (await answer.json()).status};
  };
</script>
"""


async def post(relay: Relay, status: str) -> None:
    response = await relay.post_callback("demo", orjson.dumps({"id": "j1", "status": status}))
    assert response.status_code == 200


async def test_a_page_on_a_listed_origin_follows_a_job_and_stops_after_its_final_event(
    browser: Browser, tmp_path: Path
) -> None:
    """Every event reaches the page's EventSource and its long-poll gets the result; the reconnect after the
    final event is answered 204 with Last-Event-ID sent, and the EventSource closes (readyState 2)."""
    async with serve_page(PAGE) as origin:
        async with start_relay(make_settings(tmp_path, cors_origins=[origin])) as relay:
            await follow_a_job(browser, relay, origin)


async def follow_a_job(browser: Browser, relay: LiveRelay, origin: str) -> None:
    """The page on `origin` follows job j1 of `relay` with its ticket, as the test's docstring says."""
    registered = await relay.client.post("/v1/jobs", json={"source": "demo", "job_id": "j1"})
    ticket = quote(registered.json()["ticket"])
    job_url = f"{relay.base_url}/v1/jobs/demo/j1?ticket={ticket}"
    stream_url = f"{relay.base_url}/v1/jobs/demo/j1/events?ticket={ticket}"
    page = await browser.new_page()
    page.set_default_timeout(WITHIN_MS)
    stream_requests: list[Request] = []
    stream_answers: list[int] = []

    def seen(request: Request) -> None:
        if request.url == stream_url:
            stream_requests.append(request)

    def answered(response: Response) -> None:
        if response.url == stream_url:
            stream_answers.append(response.status)

    page.on("request", seen)
    page.on("response", answered)
    await page.goto(origin)
    await page.evaluate("([stream, job]) => { follow(stream); longPoll(job); }", [stream_url, job_url])
    await wait_for(lambda: relay.services.hub.count == 2, within=WITHIN_MS / 1000)  # both held

    await post(relay, "processing")
    await post(relay, "succeeded")

    await page.wait_for_function("() => window.received.length === 2 && window.polled !== undefined")
    events = await relay.services.store.list_events("demo", "j1")
    assert await page.evaluate("window.received") == [
        {"type": event.type, "id": str(event.id), "status": status}
        for event, status in zip(events, ("running", "succeeded"), strict=True)
    ]
    polled = await page.evaluate("window.polled")
    assert polled == {"code": 200, "applied": "wait=30", "status": "succeeded"}

    # The stream closed after the final event; the browser's one reconnect is told 204 and gives up.
    await page.wait_for_function("() => window.source.readyState === EventSource.CLOSED")
    assert stream_answers == [200, 204]
    resumed = await stream_requests[1].all_headers()
    assert resumed["last-event-id"] == str(events[-1].id)
    await page.close()
