"""The dashboard's screenshots in docs/screenshots/: each page of a relay holding sample data (jobs in several
states, one with progress, a dead delivery), at 1280x800, through Playwright on the system's Chromium.

Run: .venv/bin/python scripts/screenshots.py   (needs /usr/bin/chromium; never `playwright install`)
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import orjson
from playwright.async_api import Page, async_playwright

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))

from _harness import API_KEY, SECRET, serve  # noqa: E402

OUT = ROOT / "docs" / "screenshots"
VIEWPORT = {"width": 1280, "height": 800}
CHROMIUM = "/usr/bin/chromium"


def signed(body: dict[str, Any]) -> tuple[bytes, dict[str, str]]:
    """A Standard Webhooks callback for the `demo` source (bench/_harness.py's secret)."""
    raw = orjson.dumps(body)
    msg_id, ts = f"msg_{uuid.uuid4().hex}", str(int(time.time()))
    key = base64.b64decode(SECRET.removeprefix("whsec_"))
    digest = hmac.new(key, f"{msg_id}.{ts}.".encode() + raw, hashlib.sha256).digest()
    headers = {
        "content-type": "application/json",
        "webhook-id": msg_id,
        "webhook-timestamp": ts,
        "webhook-signature": "v1," + base64.b64encode(digest).decode(),
    }
    return raw, headers


async def sample_data(api: httpx.AsyncClient) -> None:
    """Jobs pending, running with progress, succeeded, failed; a subscription whose delivery is dead."""

    async def callback(body: dict[str, Any]) -> None:
        raw, headers = signed(body)
        answer = await api.post("/hooks/demo", content=raw, headers=headers)
        answer.raise_for_status()

    # Nothing listens on port 9: the delivery fails, and with no retries it is dead at once.
    created = await api.post(
        "/v1/subscriptions", json={"url": "http://127.0.0.1:9/hooks/relay", "source": "demo"}
    )
    created.raise_for_status()
    for job_id, prompt in [("render-7f3a", "a red fox"), ("render-1c9e", "lighthouse at dusk")]:
        await api.post("/v1/jobs", json={"source": "demo", "job_id": job_id, "metadata": {"prompt": prompt}})
    await callback({"id": "upscale-22", "status": "running", "progress": {"step": 18, "of": 30}})
    await callback({"id": "caption-903", "status": "failed", "error": "CUDA out of memory"})
    await callback(
        {"id": "render-7f3a", "status": "succeeded", "output": ["https://cdn.example.com/fox.png"]}
    )
    for n in range(40):
        await api.post("/v1/jobs", json={"source": "demo", "job_id": f"batch-{n:03}"})
    for n in range(0, 40, 3):
        await callback({"id": f"batch-{n:03}", "status": "succeeded", "output": {"n": n}})
    deadline = time.monotonic() + 15
    while not (await api.get("/v1/deliveries", params={"status": "dead"})).json()["deliveries"]:
        if time.monotonic() > deadline:
            raise TimeoutError("no delivery died within 15 s")
        await asyncio.sleep(0.1)


async def shoot(page: Page, base: str) -> list[Path]:
    shots = []

    async def take(name: str, path: str) -> None:
        await page.goto(f"{base}{path}")
        await page.wait_for_load_state("networkidle")
        await page.evaluate("document.querySelectorAll('details').forEach(d => { d.open = true })")
        file = OUT / f"{name}.png"
        await page.screenshot(path=str(file))
        shots.append(file)

    await take("sign-in", "/ui/sign-in")
    await page.fill("input[name=api_key]", API_KEY)
    await page.click("button:has-text('Sign in')")
    await page.wait_for_url(f"{base}/ui/")
    await take("jobs", "/ui/")
    await take("job", "/ui/jobs/demo/upscale-22")
    await take("deliveries", "/ui/deliveries")
    await take("subscriptions", "/ui/subscriptions")
    await take("sources", "/ui/sources")
    return shots


async def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        with serve("relay", Path(tmp), allow_private_destinations=True, retry_schedule_s=[]) as server:
            base = f"http://127.0.0.1:{server.port}"
            headers = {"authorization": f"Bearer {API_KEY}"}
            async with httpx.AsyncClient(base_url=base, headers=headers) as api:
                await sample_data(api)
            async with async_playwright() as pw:
                browser = await pw.chromium.launch(executable_path=CHROMIUM)
                page = await browser.new_page(viewport=VIEWPORT)  # type: ignore[arg-type]
                shots = await shoot(page, base)
                await browser.close()
    for shot in shots:
        print(shot.relative_to(ROOT), shot.stat().st_size, "bytes")


if __name__ == "__main__":
    asyncio.run(main())
