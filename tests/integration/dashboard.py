"""Dashboard test helpers: sign in through the form, read a page's CSRF token, make a dead delivery."""

from __future__ import annotations

import re

import httpx
import orjson

from tests.conftest import API_KEY, Relay, wait_for

__all__ = ["csrf_of", "dead_delivery", "sign_in"]

_CSRF = re.compile(r'name="csrf" value="([^"]+)"')


def csrf_of(html: str) -> str:
    """The CSRF token of the first form on a page."""
    found = _CSRF.search(html)
    assert found is not None, "no CSRF field on the page"
    return found.group(1)


async def sign_in(client: httpx.AsyncClient, api_key: str = API_KEY, next_page: str = "") -> httpx.Response:
    """GET the sign-in form (its token and cookie), then POST the key with them."""
    form = await client.get("/ui/sign-in")
    assert form.status_code == 200, form.text
    data = {"csrf": csrf_of(form.text), "api_key": api_key, "next": next_page}
    return await client.post("/ui/sign-in", data=data)


async def dead_delivery(relay: Relay, subscriber_url: str, job_id: str = "j1") -> str:
    """A job succeeded whose one delivery died (the subscriber answered 500; the schedule has no retries)."""
    created = await relay.client.post("/v1/subscriptions", json={"url": subscriber_url, "source": "demo"})
    assert created.status_code == 201, created.text
    body = orjson.dumps({"id": job_id, "status": "succeeded", "output": {"ok": True}})
    assert (await relay.post_callback("demo", body)).status_code == 200

    async def dead() -> bool:
        listed = (await relay.client.get("/v1/deliveries", params={"status": "dead"})).json()["deliveries"]
        return bool(listed)

    await wait_for(dead)
    listed = (await relay.client.get("/v1/deliveries", params={"status": "dead"})).json()["deliveries"]
    return str(listed[0]["id"])
