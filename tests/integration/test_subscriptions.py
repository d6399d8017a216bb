"""Subscriptions through the API: create, list, delete, rotate, and the destination guard when subscribing."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest
from standardwebhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError

from relay.delivery import Deliverer
from relay.first_run import write_first_run_config
from relay.settings import load_settings
from tests.conftest import Clock, Relay, open_relay
from tests.integration.conftest import SettingsWith

# Public addresses stand for subscribers that are never called here (the tests need no DNS).
from tests.subscriber import Reply, subscriber

SIGNING_SECRET = "whsec_c2lnbmluZy1zZWNyZXQtZm9yLXRlc3Rz"


async def test_create_list_get_delete(relay: Relay) -> None:
    """The secret is shown at creation only; a deleted subscription is gone."""
    created = await relay.client.post(
        "/v1/subscriptions",
        json={"url": "https://93.184.216.34/in", "source": "demo", "events": ["job.failed"]},
    )
    assert created.status_code == 201, created.text
    sub = created.json()
    assert sub["id"].startswith("sub_") and sub["secret"].startswith("whsec_")
    assert (sub["url"], sub["source"], sub["events"], sub["disabled"]) == (
        "https://93.184.216.34/in",
        "demo",
        ["job.failed"],
        False,
    )
    Webhook(sub["secret"])  # a secret the reference library takes
    listed = (await relay.client.get("/v1/subscriptions")).json()["subscriptions"]
    assert [s["id"] for s in listed] == [sub["id"]] and "secret" not in listed[0]
    got = await relay.client.get(f"/v1/subscriptions/{sub['id']}")
    assert got.status_code == 200 and "secret" not in got.json()
    assert (await relay.client.delete(f"/v1/subscriptions/{sub['id']}")).status_code == 204
    assert (await relay.client.delete(f"/v1/subscriptions/{sub['id']}")).status_code == 404
    assert (await relay.client.get(f"/v1/subscriptions/{sub['id']}")).status_code == 404
    assert (await relay.client.get("/v1/subscriptions")).json() == {"subscriptions": []}


BAD_SUBSCRIPTIONS: list[tuple[dict[str, object], str]] = [
    ({}, "bad_url"),
    ({"url": "ftp://93.184.216.34/x"}, "bad_url"),
    ({"url": "not a url"}, "bad_url"),
    ({"url": "https://93.184.216.34", "events": ["job.exploded"]}, "bad_field"),
    ({"url": "https://93.184.216.34", "events": []}, "bad_field"),
    ({"url": "https://93.184.216.34", "source": "nope"}, "unknown_source"),
    ({"url": "https://93.184.216.34", "colour": "red"}, "bad_field"),
]
PRIVATE_URLS = [
    "http://localhost:8080/hook",
    "http://127.0.0.1/hook",
    "http://[::1]:9000/",
    "http://10.0.0.5/",
    "http://192.168.1.10/",
    "http://169.254.169.254/latest/meta-data/",
    "http://100.64.1.1/",
    "http://[::ffff:127.0.0.1]/",
    "http://0.0.0.0:8000/",
]


async def test_bad_subscriptions_are_refused(relay: Relay) -> None:
    """Each malformed request is a 400 naming what is wrong; nothing is stored."""
    for body, code in BAD_SUBSCRIPTIONS:
        response = await relay.client.post("/v1/subscriptions", json=body)
        assert response.status_code == 400, (body, response.text)
        assert response.json()["error"]["code"] == code, body
    assert (await relay.client.get("/v1/subscriptions")).json() == {"subscriptions": []}


async def test_private_destinations_are_refused_by_default(relay: Relay) -> None:
    """Loopback, private, link-local, CGNAT and metadata addresses get a clear 400."""
    for url in PRIVATE_URLS:
        response = await relay.client.post("/v1/subscriptions", json={"url": url})
        assert response.status_code == 400, url
        error = response.json()["error"]
        assert error["code"] == "private_destination", url
        assert "allow_private_destinations" in error["message"]


async def test_per_job_subscribers_pass_the_same_guard(settings_with: SettingsWith) -> None:
    """A private per-job subscriber is refused at registration; none without signing_secret at all."""
    async with open_relay(settings_with(signing_secret=SIGNING_SECRET)) as relay:
        job = {"source": "demo", "job_id": "j", "subscribers": ["http://127.0.0.1:9/hook"]}
        response = await relay.client.post("/v1/jobs", json=job)
        assert response.status_code == 400 and response.json()["error"]["code"] == "private_destination"
        assert (await relay.client.get("/v1/jobs/demo/j")).status_code == 404
    async with open_relay(settings_with()) as relay:
        job = {"source": "demo", "job_id": "j", "subscribers": ["https://93.184.216.34/in"]}
        response = await relay.client.post("/v1/jobs", json=job)
        assert response.status_code == 400 and response.json()["error"]["code"] == "no_signing_secret"


async def test_allow_private_destinations_lets_loopback_subscribe(settings_with: SettingsWith) -> None:
    """With allow_private_destinations = true a loopback subscriber is taken."""
    async with open_relay(settings_with(allow_private_destinations=True)) as relay:
        response = await relay.client.post("/v1/subscriptions", json={"url": "http://127.0.0.1:9/hook"})
        assert response.status_code == 201


async def test_subscriptions_and_deliveries_need_the_api_key(relay: Relay) -> None:
    """Without a bearer key every subscription and delivery endpoint answers 401."""
    anonymous = {"authorization": ""}
    for method, path in [
        ("POST", "/v1/subscriptions"),
        ("GET", "/v1/subscriptions"),
        ("DELETE", "/v1/subscriptions/sub_x"),
        ("POST", "/v1/subscriptions/sub_x/rotate-secret"),
        ("GET", "/v1/deliveries"),
        ("POST", "/v1/deliveries/dlv_1/retry"),
    ]:
        response = await relay.client.request(method, path, headers=anonymous)
        assert response.status_code == 401, (method, path)


async def test_rotation_signs_with_the_new_and_the_old_secret(settings_with: SettingsWith) -> None:
    """After rotate-secret a delivery carries two signatures: receivers on either secret verify it."""
    settings = settings_with(allow_private_destinations=True)
    async with subscriber() as sub, open_relay(settings) as relay:
        created = (await relay.client.post("/v1/subscriptions", json={"url": sub.url})).json()
        rotated = await relay.client.post(f"/v1/subscriptions/{created['id']}/rotate-secret")
        assert rotated.status_code == 200
        new = rotated.json()
        assert new["secret"] != created["secret"] and new["previous_secret_expires_at"] is not None
        assert (await relay.client.post("/v1/subscriptions/sub_nope/rotate-secret")).status_code == 404
        await relay.post_callback("demo", orjson.dumps({"id": "j", "status": "succeeded"}))
        (got,) = await sub.received_at_least(1)
        assert len(got.headers["webhook-signature"].split(" ")) == 2
        assert got.verify(new["secret"]) == got.verify(created["secret"])
        with pytest.raises(WebhookVerificationError):
            Webhook("whsec_" + "A" * 32).verify(got.body, got.headers)


async def test_first_run_config_lets_jobs_have_subscribers(tmp_path: Path, database: str) -> None:
    """The config written on first start has a signing_secret, so per-job subscribers work at once."""
    created = write_first_run_config(tmp_path / "relay.toml")
    settings = load_settings(tmp_path / "relay.toml", environ={}, overrides={"database": database})
    assert settings.signing_secret == created["signing_secret"]
    async with open_relay(settings) as relay:
        job = {"source": "demo", "job_id": "j", "subscribers": ["https://93.184.216.34/in"]}
        headers = {"authorization": f"Bearer {created['api_key']}"}
        assert (await relay.client.post("/v1/jobs", json=job, headers=headers)).status_code == 201


# --- PATCH /v1/subscriptions/{id} ---


async def test_patch_re_enables_a_subscription_a_410_disabled(settings_with: SettingsWith) -> None:
    """`enabled: true` clears the 410's disabling: new events reach the subscriber again; the delivery given
    up stays dead until `POST /v1/deliveries/{id}/retry` sends it."""
    clock = Clock()
    settings = settings_with(allow_private_destinations=True)
    async with (
        subscriber([Reply(410)]) as sub,
        open_relay(settings, clock, background=False) as relay,
    ):
        created = (await relay.client.post("/v1/subscriptions", json={"url": sub.url})).json()
        path = f"/v1/subscriptions/{created['id']}"
        await _callback(relay, "j1", clock)
        await _deliver(relay, clock.now)
        assert (await relay.client.get(path)).json()["disabled_reason"] == "410 Gone"
        enabled = await relay.client.patch(path, json={"enabled": True})
        assert enabled.status_code == 200, enabled.text
        body = enabled.json()
        assert (body["disabled"], body["disabled_at"], body["disabled_reason"]) == (False, None, None)
        assert "secret" not in body and body == (await relay.client.get(path)).json()
        await _callback(relay, "j2", clock)
        assert await _deliver(relay, clock.now) == 1
        by_job = {d["job_id"]: d for d in (await relay.client.get("/v1/deliveries")).json()["deliveries"]}
        assert (by_job["j1"]["status"], by_job["j2"]["status"]) == ("dead", "delivered")
        retried = await relay.client.post(f"/v1/deliveries/{by_job['j1']['id']}/retry")
        assert retried.status_code == 202, retried.text
        assert await _deliver(relay, clock.now) == 1
        assert [orjson.loads(r.body)["data"]["job_id"] for r in sub.received] == ["j1", "j2", "j1"]


async def test_patch_changes_url_and_filters(settings_with: SettingsWith) -> None:
    """A new URL and filters are answered and kept; what is left out stays; `enabled: false` disables."""
    async with subscriber() as sub, open_relay(settings_with(allow_private_destinations=True)) as relay:
        created = await relay.client.post(
            "/v1/subscriptions", json={"url": "https://93.184.216.34/in", "source": "demo"}
        )
        path = f"/v1/subscriptions/{created.json()['id']}"
        changed = await relay.client.patch(
            path, json={"url": sub.url, "events": ["job.failed", "job.running"]}
        )
        assert changed.status_code == 200, changed.text
        assert (changed.json()["url"], changed.json()["source"], changed.json()["events"]) == (
            sub.url,
            "demo",
            ["job.failed", "job.running"],
        )
        everything = (await relay.client.patch(path, json={"source": None, "events": None})).json()
        assert (everything["url"], everything["source"], everything["events"]) == (sub.url, None, None)
        assert (await relay.client.patch(path, json={})).json() == everything
        disabled = (await relay.client.patch(path, json={"enabled": False})).json()
        assert (disabled["disabled"], disabled["disabled_reason"]) == (True, "disabled through the API")


BAD_CHANGES: list[tuple[object, str]] = [
    ({"colour": "red"}, "bad_field"),
    ({"enabled": "yes"}, "bad_field"),
    ({"enabled": None}, "bad_field"),
    ({"events": []}, "bad_field"),
    ({"events": ["job.exploded"]}, "bad_field"),
    ({"source": "nope"}, "unknown_source"),
    ({"url": 5}, "bad_url"),
    ({"url": None}, "bad_url"),
    ({"url": "ftp://93.184.216.34/x"}, "bad_url"),
    ({"url": "http://127.0.0.1/hook"}, "private_destination"),
    ([], "malformed_json"),
]


async def test_patch_refusals(relay: Relay) -> None:
    """Each bad change is a 400 naming what is wrong and changes nothing; an unknown id is a 404; the API
    key is needed."""
    created = (await relay.client.post("/v1/subscriptions", json={"url": "https://93.184.216.34/in"})).json()
    path = f"/v1/subscriptions/{created['id']}"
    for body, code in BAD_CHANGES:
        response = await relay.client.patch(path, json=body)
        assert response.status_code == 400, (body, response.text)
        assert response.json()["error"]["code"] == code, body
    unchanged = (await relay.client.get(path)).json()
    assert unchanged == {k: v for k, v in created.items() if k != "secret"}
    missing = await relay.client.patch("/v1/subscriptions/sub_nope", json={"enabled": True})
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "unknown_subscription"
    anonymous = await relay.client.patch(path, json={"enabled": True}, headers={"authorization": ""})
    assert anonymous.status_code == 401


async def _callback(relay: Relay, job_id: str, clock: Clock) -> None:
    body = orjson.dumps({"id": job_id, "status": "succeeded"})
    response = await relay.post_callback("demo", body, timestamp=clock.now)
    assert response.status_code == 200, response.text


async def _deliver(relay: Relay, now: float) -> int:
    """One deliverer round at `now`, its attempts run to the end; answer how many it claimed."""
    deliverer = relay.services.loop(Deliverer)
    claimed = await deliverer.run_once(now)
    await deliverer.drain()
    return claimed
