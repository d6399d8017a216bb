"""The dashboard's pages on the same store as the API: empty and full, filters and pages, Retry, the
subscription actions, the sources' callback counts, and every provider value shown as text."""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import quote

import orjson
import pytest

from relay.ui.pages_jobs import LIVE_POLL_S
from tests.conftest import LiveRelay, Relay, open_relay
from tests.integration.conftest import SettingsWith
from tests.integration.dashboard import csrf_of, dead_delivery, sign_in
from tests.subscriber import Reply, subscriber

XSS = "<script>alert(1)</script>"


async def callback(relay: Relay, job_id: str, status: str = "succeeded", **payload: Any) -> None:
    body = orjson.dumps({"id": job_id, "status": status, **payload})
    assert (await relay.post_callback("demo", body)).status_code == 200


async def test_every_page_renders_with_nothing_stored(relay: Relay) -> None:
    """An empty relay: each page is 200 and says there is nothing yet; an unknown job is a 404 page."""
    async with relay.anonymous() as browser:
        await sign_in(browser)
        expected = {
            "/ui/": "No jobs.",
            "/ui/deliveries": "No deliveries.",
            "/ui/subscriptions": "No subscriptions yet.",
            "/ui/sources": "standard-webhooks",
        }
        for path, text in expected.items():
            page = await browser.get(path)
            assert page.status_code == 200 and text in page.text, path
        missing = await browser.get("/ui/jobs/demo/nope")
        assert missing.status_code == 404 and "No job &#39;nope&#39;" in missing.text


async def test_the_jobs_list_filters_searches_and_pages(relay: Relay) -> None:
    """Newest first with counts by status; source and status filters; an exact job ID; pages of `limit`."""
    for n in range(5):
        await relay.client.post("/v1/jobs", json={"source": "demo", "job_id": f"job-{n}"})
    await relay.client.post("/v1/jobs", json={"source": "replicate", "job_id": "rep-1"})
    await callback(relay, "job-1")
    async with relay.anonymous() as browser:
        await sign_in(browser)
        page = (await browser.get("/ui/")).text
        assert _job_ids(page) == ["rep-1", "job-4", "job-3", "job-2", "job-1", "job-0"]
        assert 'data-count="succeeded">1<' in page and 'data-count="pending">5<' in page
        demo_pending = (await browser.get("/ui/", params={"source": "demo", "status": "pending"})).text
        assert _job_ids(demo_pending) == ["job-4", "job-3", "job-2", "job-0"]
        assert _job_ids((await browser.get("/ui/", params={"q": "job-3"})).text) == ["job-3"]
        assert _job_ids((await browser.get("/ui/", params={"q": "job-3", "source": "replicate"})).text) == []
        first = (await browser.get("/ui/", params={"limit": "4"})).text
        assert _job_ids(first) == ["rep-1", "job-4", "job-3", "job-2"]
        older = re.search(r'href="([^"]+)" rel="next"', first)
        assert older is not None and 'data-live="' in first
        second = (await browser.get(older.group(1).replace("&amp;", "&"))).text
        assert _job_ids(second) == ["job-1", "job-0"] and 'data-live="' not in second
        bad = await browser.get("/ui/", params={"status": "sleeping"})
        assert bad.status_code == 400 and "unknown status" in bad.text


def _job_ids(html: str) -> list[str]:
    return re.findall(r'<tr data-job="([^"]*)">', html)


async def test_the_job_page_shows_its_status_result_history_and_deliveries(
    settings_with: SettingsWith,
) -> None:
    """Status, metadata, the result (pretty, in <details>), the history with `via`, events, each delivery."""
    async with subscriber() as sub, open_relay(settings_with(allow_private_destinations=True)) as relay:
        await relay.client.post("/v1/subscriptions", json={"url": sub.url})
        registered = {"source": "demo", "job_id": "a/b c", "metadata": {"prompt": "fox"}}
        await relay.client.post("/v1/jobs", json=registered)
        await callback(relay, "a/b c", output={"images": ["https://cdn.example/1.png"]})
        await sub.received_at_least(1)
        async with relay.anonymous() as browser:
            await sign_in(browser)
            page = await browser.get(f"/ui/jobs/demo/{quote('a/b c', safe='')}")
        assert page.status_code == 200
        assert 'id="job-status">succeeded<' in page.text
        assert "&#34;prompt&#34;: &#34;fox&#34;" in page.text  # pretty JSON, escaped
        assert '<details open class="json-block"><summary>Result JSON</summary>' in page.text
        assert "https://cdn.example/1.png" in page.text
        assert '<td data-label="Via">webhook</td>' in page.text
        assert "job.succeeded" in page.text and "dlv_" in page.text
        assert "Files" not in page.text  # no archiving here


async def test_provider_values_are_shown_as_text(relay: Relay) -> None:
    """XSS: a job ID, metadata and a result holding `<script>` reach every page escaped, never as markup."""
    await relay.client.post("/v1/jobs", json={"source": "demo", "job_id": XSS, "metadata": {XSS: XSS}})
    await callback(relay, XSS, output={"html": XSS}, error=XSS)
    async with relay.anonymous() as browser:
        await sign_in(browser)
        pages = [
            await browser.get("/ui/"),
            await browser.get("/ui/", params={"q": XSS}),
            await browser.get(f"/ui/jobs/demo/{quote(XSS, safe='')}"),
        ]
    for page in pages:
        assert page.status_code == 200
        assert "<script>alert" not in page.text
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page.text


async def test_retry_queues_a_dead_delivery_and_shows_its_new_state(settings_with: SettingsWith) -> None:
    """The dead filter lists it; Retry (a form POST with the token) queues it, and it is delivered."""
    settings = settings_with(allow_private_destinations=True, retry_schedule_s=[])
    async with subscriber([Reply(500, b"busy")]) as sub, open_relay(settings) as relay:
        delivery_id = await dead_delivery(relay, sub.url)
        async with relay.anonymous() as browser:
            await sign_in(browser)
            dead = await browser.get("/ui/deliveries", params={"status": "dead"})
            assert f'id="dlv-{delivery_id[4:]}"' in dead.text and ">busy</code>" in dead.text
            assert "500" in dead.text and ">Retry</button>" in dead.text
            delivered = await browser.get("/ui/deliveries", params={"status": "delivered"})
            assert "No deliveries match these filters." in delivered.text
            retry_url = f"/ui/deliveries/{delivery_id}/retry"
            refused = await browser.post(retry_url, data={"back": "/ui/deliveries"})
            assert refused.status_code == 403
            form = {"csrf": csrf_of(dead.text), "back": "/ui/deliveries?status=dead"}
            answer = await browser.post(retry_url, data=form)
            assert (answer.status_code, answer.headers["location"]) == (303, "/ui/deliveries?status=dead")
            await sub.received_at_least(2)
            htmx = await browser.get(f"/ui/deliveries/{delivery_id}", headers={"hx-request": "true"})
            assert 'data-status="' in htmx.text and "<html" not in htmx.text
        listed = (await relay.client.get(f"/v1/deliveries/{delivery_id}")).json()
        assert listed["attempt_count"] == 2


async def test_subscriptions_are_created_toggled_rotated_and_deleted(settings_with: SettingsWith) -> None:
    """The secret is shown once; disable and enable are PATCH's `enabled`; rotation shows the new secret."""
    async with open_relay(settings_with(allow_private_destinations=True)) as relay:
        async with relay.anonymous() as browser:
            await sign_in(browser)
            token = csrf_of((await browser.get("/ui/subscriptions")).text)
            form = {"csrf": token, "url": "http://127.0.0.1:9/h", "source": "demo", "events": ["job.failed"]}
            created = await browser.post("/ui/subscriptions", data=form)
            assert created.status_code == 201
            (sub,) = (await relay.client.get("/v1/subscriptions")).json()["subscriptions"]
            assert (sub["source"], sub["events"]) == ("demo", ["job.failed"])
            secret = re.search(r'id="new-secret" readonly value="([^"]+)"', created.text)
            assert secret is not None and secret.group(1).startswith("whsec_")
            assert secret.group(1) not in (await browser.get("/ui/subscriptions")).text
            base = f"/ui/subscriptions/{sub['id']}"
            await browser.post(f"{base}/enabled", data={"csrf": token, "enabled": "false"})
            assert (await relay.client.get(f"/v1/subscriptions/{sub['id']}")).json()["disabled"] is True
            await browser.post(f"{base}/enabled", data={"csrf": token, "enabled": "true"})
            assert (await relay.client.get(f"/v1/subscriptions/{sub['id']}")).json()["disabled"] is False
            rotated = await browser.post(f"{base}/rotate-secret", data={"csrf": token})
            new = re.search(r'id="new-secret" readonly value="([^"]+)"', rotated.text)
            assert new is not None and new.group(1) != secret.group(1)
            bad_url = {"csrf": token, "url": "ftp://x", "source": ""}
            bad = await browser.post("/ui/subscriptions", data=bad_url)
            assert bad.status_code == 400
            deleted = await browser.post(f"{base}/delete", data={"csrf": token})
            assert deleted.status_code == 303
            assert (await relay.client.get("/v1/subscriptions")).json()["subscriptions"] == []
            gone = await browser.post(f"{base}/delete", data={"csrf": token})
            assert gone.status_code == 404 and "no subscription" in gone.text


async def test_sources_show_their_webhook_url_and_callbacks_by_outcome(relay: Relay) -> None:
    """Kind, the webhook URL, accepted callbacks and rejected ones by reason (from relay_callbacks_total)."""
    await callback(relay, "j1", status="processing")
    await callback(relay, "j1")
    other_secret = "whsec_" + "A" * 32
    forged = await relay.post_callback("demo", b'{"id": "j2", "status": "succeeded"}', secret=other_secret)
    assert forged.status_code == 401
    async with relay.anonymous() as browser:
        await sign_in(browser)
        page = (await browser.get("/ui/sources")).text
    demo = page[page.index('id="source-demo"') : page.index('id="source-replicate"')]
    assert 'value="http://127.0.0.1:8000/hooks/demo"' in demo
    assert 'data-count="accepted">2<' in demo
    assert re.search(r'data-rejected="\w+">1<', demo)


async def test_the_live_list_sends_the_rows_again_when_a_job_changes(live_relay: LiveRelay) -> None:
    """The SSE stream sends the list at once, then again (without a reload) once a callback changed a job."""
    await live_relay.client.post("/v1/jobs", json={"source": "demo", "job_id": "live-1"})
    async with live_relay.anonymous() as browser:
        await sign_in(browser)
        async with browser.stream("GET", "/ui/jobs/live", timeout=10) as stream:
            assert stream.headers["content-type"].startswith("text/event-stream")
            messages = _messages(stream.aiter_lines())
            first = await anext(messages)
            assert 'data-job="live-1"' in first and "status-pending" in first
            await callback(live_relay, "live-1")
            second = await anext(messages)  # sent within LIVE_POLL_S of the change
            assert "status-succeeded" in second and 'data-count="succeeded">1<' in second
    assert LIVE_POLL_S <= 1.0


async def _messages(lines: Any) -> Any:
    """The `jobs` messages of an SSE stream, as their data."""
    data: list[str] = []
    async for line in lines:
        if line.startswith("data: "):
            data.append(line[6:])
        elif line == "" and data:
            yield "\n".join(data)
            data = []


@pytest.mark.sqlite_only("the document's walk does not depend on the backend")
async def test_the_static_files_are_served_from_the_package(relay: Relay) -> None:
    """htmx and relay's own script and stylesheet come from the package (no CDN), htmx with its version."""
    async with relay.anonymous() as browser:
        htmx = await browser.get("/ui/static/htmx.min.js")
        assert htmx.status_code == 200 and htmx.text.startswith("/*! htmx 2.")
        for name in ("relay.js", "relay.css"):
            assert (await browser.get(f"/ui/static/{name}")).status_code == 200
