"""verify_delivery: it accepts what relay really sends to a subscriber on loopback (and what the
`standardwebhooks` reference library signs), and refuses a tampered body, a stale timestamp, a wrong
secret."""

from __future__ import annotations

import asyncio
import base64
import json
import time
from datetime import UTC, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from standardwebhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError

from relay.client import AsyncClient, Client, InvalidSignature, verify_delivery
from tests.client.conftest import post_status
from tests.conftest import API_KEY, LiveRelay, wait_for
from tests.subscriber import subscriber

WRONG_SECRET = "whsec_" + base64.b64encode(b"w" * 32).decode()


def refusal(secret: str | list[str], headers: dict[str, str], body: bytes, **kwargs: float) -> str:
    """The code verify_delivery refuses with (fails the test if it accepts)."""
    with pytest.raises(InvalidSignature) as raised:
        verify_delivery(secret, headers, body, **kwargs)
    return raised.value.code


async def test_a_real_delivery_verifies_and_tampering_does_not(
    live_relay: LiveRelay, client: AsyncClient
) -> None:
    """A subscription's delivery, as the subscriber read it off the wire, verifies with its secret; a changed
    body, a wrong secret or a timestamp outside the tolerance (either way) is refused."""
    async with subscriber() as sub:
        subscription = await client.create_subscription(sub.url, source="demo")
        assert subscription.secret is not None
        await post_status(live_relay, "j1", "succeeded", output=[1])
        (delivery,) = await sub.received_at_least(1)
    secret, headers, body = subscription.secret, delivery.headers, delivery.body

    payload = verify_delivery(secret, headers, body)
    assert payload["type"] == "job.succeeded" and payload["id"] == headers["webhook-id"]
    assert payload["data"]["job_id"] == "j1" and payload["data"]["result"]["output"] == [1]
    assert verify_delivery(secret, {k.title(): v for k, v in headers.items()}, body.decode()) == payload

    assert refusal(secret, headers, body.replace(b"succeeded", b"succeedeD")) == "bad_signature"
    assert refusal(WRONG_SECRET, headers, body) == "bad_signature"
    sent_at = int(headers["webhook-timestamp"])
    assert refusal(secret, headers, body, now=sent_at + 301) == "stale_timestamp"
    assert refusal(secret, headers, body, now=sent_at - 301) == "stale_timestamp"
    assert verify_delivery(secret, headers, body, now=sent_at + 299) == payload
    assert refusal(secret, {**headers, "webhook-id": "evt_other"}, body) == "bad_signature"
    assert refusal(secret, {k: v for k, v in headers.items() if k != "webhook-signature"}, body) == (
        "missing_signature"
    )


async def test_during_a_rotation_either_secret_verifies(live_relay: LiveRelay, client: AsyncClient) -> None:
    """After rotate-secret relay signs with both secrets (two `v1,` entries): the old and the new secret each
    verify, so does a list holding the right one; a list of wrong ones does not."""
    async with subscriber() as sub:
        old = await client.create_subscription(sub.url)
        rotated = await live_relay.client.post(f"/v1/subscriptions/{old.id}/rotate-secret")
        new_secret = rotated.json()["secret"]
        await post_status(live_relay, "j1", "failed")
        (delivery,) = await sub.received_at_least(1)
    assert old.secret is not None and len(delivery.headers["webhook-signature"].split(" ")) == 2
    for secret in (old.secret, new_secret, [WRONG_SECRET, new_secret]):
        assert verify_delivery(secret, delivery.headers, delivery.body)["type"] == "job.failed"
    assert refusal([WRONG_SECRET], delivery.headers, delivery.body) == "bad_signature"


async def test_deliveries_can_be_listed_retried_and_subscriptions_deleted(
    live_relay: LiveRelay, client: AsyncClient
) -> None:
    """The delivery helpers: list a job's deliveries, send one again (same webhook-id, verifiable), list and
    delete the subscription."""
    async with subscriber() as sub:
        subscription = await client.create_subscription(sub.url, source="demo", events=["job.succeeded"])
        await post_status(live_relay, "j1", "succeeded")
        await sub.received_at_least(1)

        async def delivered_once() -> bool:  # relay records the attempt once it has read the answer
            return [d.status async for d in client.deliveries(job_id="j1")] == ["delivered"]

        await wait_for(delivered_once)
        (delivered,) = [d async for d in client.deliveries(job_id="j1")]
        assert delivered.subscription_id == subscription.id and delivered.attempts[0].status_code == 200
        page = await client.deliveries_page(job_id="j1", status="delivered")  # one page, as relay sent it
        assert [d["id"] for d in page["deliveries"]] == [delivered.id] and page["next_cursor"] is None
        retried = await client.retry_delivery(delivered.id)
        assert retried.id == delivered.id and retried.status == "pending"
        first, again = await sub.received_at_least(2)
    assert again.webhook_id == first.webhook_id == delivered.event_id
    assert subscription.secret is not None
    verify_delivery(subscription.secret, again.headers, again.body)
    assert [s.id for s in await client.subscriptions()] == [subscription.id]
    await client.delete_subscription(subscription.id)
    assert await client.subscriptions() == []


_json_objects = st.dictionaries(st.text(max_size=8), st.text(max_size=16) | st.integers(), max_size=4)


@settings(max_examples=60, deadline=None)
@given(
    key=st.binary(min_size=1, max_size=48),
    msg_id=st.text(st.characters(min_codepoint=33, max_codepoint=126), min_size=1, max_size=40),
    doc=_json_objects,
    skew=st.integers(-299, 299),
    flip=st.integers(min_value=0),
)
def test_the_reference_library_and_verify_delivery_agree(
    key: bytes, msg_id: str, doc: dict[str, object], skew: int, flip: int
) -> None:
    """What `standardwebhooks` signs, verify_delivery accepts; one byte of the body changed, both refuse."""
    secret = "whsec_" + base64.b64encode(key).decode()
    body = json.dumps(doc)
    now = time.time()
    timestamp = datetime.fromtimestamp(int(now) + skew, UTC)
    headers = {
        "webhook-id": msg_id,
        "webhook-timestamp": str(int(timestamp.timestamp())),
        "webhook-signature": Webhook(secret).sign(msg_id, timestamp, body),
    }
    assert verify_delivery(secret, headers, body, now=now) == doc
    at = flip % len(body)
    tampered = body[:at] + chr(ord(body[at]) ^ 1) + body[at + 1 :]
    with pytest.raises(WebhookVerificationError):
        Webhook(secret).verify(tampered, headers)
    with pytest.raises(InvalidSignature):
        verify_delivery(secret, headers, tampered, now=now)


def test_a_signed_body_that_is_not_an_object_and_bad_secrets_are_refused() -> None:
    """A correctly signed body that is not a JSON object is refused; no secret or a malformed one is a
    programming error (ValueError), not a bad delivery."""
    secret = "whsec_" + base64.b64encode(b"k" * 32).decode()
    timestamp = datetime.fromtimestamp(int(time.time()), UTC)
    body = "[1, 2]"
    headers = {
        "webhook-id": "evt_1",
        "webhook-timestamp": str(int(timestamp.timestamp())),
        "webhook-signature": Webhook(secret).sign("evt_1", timestamp, body),
    }
    assert refusal(secret, headers, body.encode()) == "malformed_json"
    with pytest.raises(ValueError):
        verify_delivery([], headers, body)
    with pytest.raises(ValueError):
        verify_delivery("whsec_not base64!", headers, body)


async def test_the_sync_client_manages_subscriptions_and_deliveries(live_relay: LiveRelay) -> None:
    """Client's subscription and delivery helpers (blocking, here in a thread) do what AsyncClient's do."""
    async with subscriber() as sub:

        def subscribe() -> str:
            with Client(live_relay.base_url, api_key=API_KEY) as client:
                return client.create_subscription(sub.url, source="demo").id

        subscription_id = await asyncio.to_thread(subscribe)
        await post_status(live_relay, "j1", "succeeded")

        async def delivered() -> bool:  # not in flight any more, or the retry would be refused
            page = (await live_relay.client.get("/v1/deliveries", params={"status": "delivered"})).json()
            return len(page["deliveries"]) == 1

        await wait_for(delivered)

        def manage() -> tuple[list[str], str, list[str]]:
            with Client(live_relay.base_url, api_key=API_KEY) as client:
                listed = [d.id for d in client.deliveries(subscription_id=subscription_id, page_size=1)]
                page = client.deliveries_page(subscription_id=subscription_id)
                assert [d["id"] for d in page["deliveries"]] == listed and page["next_cursor"] is None
                retried = client.retry_delivery(listed[0]).event_type
                client.delete_subscription(subscription_id)
                return listed, retried, [s.id for s in client.subscriptions()]

        listed, retried, left = await asyncio.to_thread(manage)
    assert len(listed) == 1 and retried == "job.succeeded" and left == []
