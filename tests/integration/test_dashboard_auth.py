"""The dashboard's sign-in: a signed, HttpOnly, SameSite=Strict session cookie from an API key, CSRF tokens on
every form that changes something, sessions that expire, and `ui = false`."""

from __future__ import annotations

import pytest

from tests.conftest import Clock, Relay, open_relay
from tests.integration.conftest import SettingsWith
from tests.integration.dashboard import csrf_of, sign_in

PAGES = ["/ui/", "/ui/deliveries", "/ui/subscriptions", "/ui/sources", "/ui/jobs/demo/j1", "/ui/jobs/live"]
POSTS = [
    "/ui/sign-out",
    "/ui/deliveries/dlv_1/retry",
    "/ui/subscriptions",
    "/ui/subscriptions/sub_x/enabled",
    "/ui/subscriptions/sub_x/rotate-secret",
    "/ui/subscriptions/sub_x/delete",
]


async def test_without_a_session_every_page_redirects_to_the_sign_in_form(relay: Relay) -> None:
    """Each page and each form's POST answers 303 to the sign-in form; a page comes back after sign-in."""
    async with relay.anonymous() as browser:
        for path in PAGES:
            answer = await browser.get(path)
            assert answer.status_code == 303, path
            assert answer.headers["location"].startswith("/ui/sign-in?next="), path
        for path in POSTS:
            answer = await browser.post(path, data={"csrf": "x"})
            assert (answer.status_code, answer.headers["location"]) == (303, "/ui/sign-in"), path
        htmx = await browser.get("/ui/deliveries", headers={"hx-request": "true"})
        assert htmx.headers["hx-redirect"] == "/ui/sign-in?next=%2Fui%2Fdeliveries"
        assert (await browser.get("/ui", follow_redirects=True)).url.path == "/ui/sign-in"
        signed = await sign_in(browser, next_page="/ui/sources")
        assert (signed.status_code, signed.headers["location"]) == (303, "/ui/sources")


async def test_signing_in_sets_a_strict_http_only_cookie_and_signing_out_ends_it(relay: Relay) -> None:
    """The key's field is `api_key`; the cookie holds no key; sign-out (with its token) clears it."""
    async with relay.anonymous() as browser:
        answer = await sign_in(browser)
        assert (answer.status_code, answer.headers["location"]) == (303, "/ui/")
        cookie = next(c for c in answer.headers.get_list("set-cookie") if c.startswith("relay_ui="))
        attributes = {part.strip().split("=")[0].lower() for part in cookie.split(";")}
        assert {"httponly", "path", "max-age"} <= attributes
        assert "samesite=strict" in cookie.lower() and "path=/ui" in cookie.lower()
        assert "test-api-key" not in cookie
        jobs = await browser.get("/ui/")
        assert jobs.status_code == 200 and "<h1>Jobs</h1>" in jobs.text
        assert "content-security-policy" in jobs.headers
        refused = await browser.post("/ui/sign-out", data={})
        assert refused.status_code == 403
        out = await browser.post("/ui/sign-out", data={"csrf": csrf_of(jobs.text)})
        assert (out.status_code, out.headers["location"]) == (303, "/ui/sign-in")
        assert (await browser.get("/ui/")).status_code == 303


async def test_a_wrong_key_or_a_sign_in_without_its_token_starts_no_session(relay: Relay) -> None:
    """A key that is not configured is 401 with the form again; a POST without the form's token is 403."""
    async with relay.anonymous() as browser:
        wrong = await sign_in(browser, api_key="not-a-key")
        assert wrong.status_code == 401 and "not one of this relay" in wrong.text
        assert "relay_ui=" not in wrong.headers.get("set-cookie", "")
        browser.cookies.clear()
        forged = await browser.post("/ui/sign-in", data={"api_key": "test-api-key", "csrf": "made-up"})
        assert forged.status_code == 403
        assert (await browser.get("/ui/")).status_code == 303


async def test_a_post_without_the_session_token_changes_nothing(relay: Relay) -> None:
    """CSRF: creating a subscription without the session's token, or with another, is refused (403)."""
    async with relay.anonymous() as browser:
        await sign_in(browser)
        for data in ({"url": "https://example.com/h"}, {"url": "https://example.com/h", "csrf": "forged"}):
            answer = await browser.post("/ui/subscriptions", data=data)
            assert answer.status_code == 403 and "stale" in answer.text
        assert (await relay.client.get("/v1/subscriptions")).json()["subscriptions"] == []


async def test_the_session_expires_at_its_age_limit(settings_with: SettingsWith) -> None:
    """With `ui_session_max_age_s = 60` a session works at 59 s and sends to the sign-in form at 60 s."""
    clock = Clock()
    async with open_relay(settings_with(ui_session_max_age_s=60), clock) as relay:
        async with relay.anonymous() as browser:
            await sign_in(browser)
            clock.advance(59)
            assert (await browser.get("/ui/sources")).status_code == 200
            clock.advance(1)
            expired = await browser.get("/ui/sources")
            assert expired.status_code == 303 and expired.headers["location"].startswith("/ui/sign-in")


async def test_a_session_ends_when_its_key_is_no_longer_configured(settings_with: SettingsWith) -> None:
    """The cookie names its key (by digest): once the key leaves `api_keys`, the cookie opens nothing."""
    async with open_relay(settings_with(api_keys=["test-api-key", "old-key"])) as relay:
        async with relay.anonymous() as browser:
            await sign_in(browser, api_key="old-key")
            cookie = browser.cookies["relay_ui"]
    async with open_relay(settings_with()) as relay:
        async with relay.anonymous() as browser:
            browser.cookies.set("relay_ui", cookie, domain="relay.test", path="/ui")
            assert (await browser.get("/ui/")).status_code == 303


@pytest.mark.sqlite_only("the routes do not depend on the backend")
async def test_ui_false_serves_no_dashboard(settings_with: SettingsWith) -> None:
    """`ui = false`: /ui and its files are 404, and the API still answers."""
    async with open_relay(settings_with(ui=False)) as relay:
        async with relay.anonymous() as browser:
            for path in ("/ui/", "/ui/sign-in", "/ui/static/htmx.min.js"):
                assert (await browser.get(path)).status_code == 404, path
        assert (await relay.client.get("/v1/jobs")).status_code == 200
