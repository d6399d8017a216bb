"""The dashboard in a real browser: sign in, watch a job turn succeeded live (no reload), open its page, retry
its dead delivery with the Retry button until it is delivered, and read every page at a phone's width."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import orjson
import pytest

from tests.conftest import API_KEY, LiveRelay, make_settings, start_relay, wait_for
from tests.subscriber import Reply, Subscriber, subscriber

if TYPE_CHECKING:
    from playwright.async_api import Browser, Page, ViewportSize

pytestmark = pytest.mark.browser

WITHIN_MS = 5_000
PHONE: ViewportSize = {"width": 390, "height": 844}


async def test_an_operator_follows_a_job_and_retries_its_dead_delivery(
    browser: Browser, tmp_path: Path
) -> None:
    """Sign-in, a live status change, the job's page, Retry to delivered, no sideways scroll on a phone."""
    settings = make_settings(tmp_path, allow_private_destinations=True, retry_schedule_s=[])
    async with subscriber([Reply(500, b"down for a moment")]) as sub, start_relay(settings) as relay:
        await relay.client.post("/v1/subscriptions", json={"url": sub.url, "source": "demo"})
        await relay.client.post("/v1/jobs", json={"source": "demo", "job_id": "cat-42"})
        page = await browser.new_page()
        page.set_default_timeout(WITHIN_MS)
        try:
            await _sign_in(page, relay)
            await _watch_the_job_succeed(page, relay, sub)
            await _retry_the_dead_delivery(page, relay)
            await _fits_a_phone(page, relay)
        finally:
            await page.close()


async def _sign_in(page: Page, relay: LiveRelay) -> None:
    await page.goto(f"{relay.base_url}/ui/")
    assert page.url.startswith(f"{relay.base_url}/ui/sign-in")
    await page.fill("input[name=api_key]", API_KEY)
    await page.click("button:has-text('Sign in')")
    await page.wait_for_url(f"{relay.base_url}/ui/")
    assert await page.text_content("h1") == "Jobs"


async def _watch_the_job_succeed(page: Page, relay: LiveRelay, sub: Subscriber) -> None:
    """The row changes while the page stays loaded (a marker set on the window survives)."""
    badge = page.locator('tr[data-job="cat-42"] .badge').first
    assert await badge.text_content() == "pending"
    await page.evaluate("window.stillTheSamePage = true")
    body = orjson.dumps({"id": "cat-42", "status": "succeeded", "output": ["https://cdn.example/cat.png"]})
    assert (await relay.post_callback("demo", body)).status_code == 200
    await page.wait_for_selector('tr[data-job="cat-42"] .badge.status-succeeded')
    assert await page.evaluate("window.stillTheSamePage") is True
    await page.click('a:has-text("cat-42")')
    await page.wait_for_selector("#job-status.status-succeeded")
    assert "https://cdn.example/cat.png" in (await page.text_content("#result") or "")
    await sub.received_at_least(1)  # the subscription's delivery: answered 500, and no retry is scheduled


async def _retry_the_dead_delivery(page: Page, relay: LiveRelay) -> None:
    async def dead() -> bool:
        answer = await relay.client.get("/v1/deliveries", params={"status": "dead"})
        return bool(answer.json()["deliveries"])

    await wait_for(dead)
    await page.click("nav >> text=Deliveries")
    card = page.locator("article.delivery").first
    await card.locator('[data-status="dead"]').wait_for()
    await card.locator("summary").click()
    assert "down for a moment" in (await card.text_content() or "")
    await card.locator("button:has-text('Retry')").click()
    await page.locator('article.delivery [data-status="delivered"]').wait_for()
    assert page.url == f"{relay.base_url}/ui/deliveries"  # swapped in place by htmx


async def _fits_a_phone(page: Page, relay: LiveRelay) -> None:
    await page.set_viewport_size(PHONE)
    for path in ("/ui/", "/ui/jobs/demo/cat-42", "/ui/deliveries", "/ui/subscriptions", "/ui/sources"):
        await page.goto(f"{relay.base_url}{path}")
        width = await page.evaluate("document.documentElement.scrollWidth")
        assert width <= PHONE["width"], f"{path} is {width} px wide"
