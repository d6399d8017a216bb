"""openai: Standard Webhooks signatures (openai's package as a second oracle); status from the event type."""

from __future__ import annotations

import time
from typing import Any

import openai
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from relay.errors import BadRequest, Unauthorized
from relay.models import Status
from relay.providers import ProviderWarnings
from relay.providers.openai import EVENT_STATUSES
from tests.conftest import signed_headers
from tests.unit.providers.support import provider

# providers.md 8.1, OAI-1: the openai SDKs' own test vector.
SECRET = "whsec_RdvaYFYUXuIFuEbvZHwMfYFhUf7aMYjYcmM24+Aj40c="
TS = 1750861210
BODY = (
    b'{"id": "evt_685c059ae3a481909bdc86819b066fb6", "object": "event", "created_at": 1750861210, '
    b'"type": "response.completed", "data": {"id": "resp_123"}}'
)
HEADERS = {
    "webhook-id": "wh_685c059ae39c8190af8c71ed1022a24d",
    "webhook-timestamp": str(TS),
    "webhook-signature": "v1,gUAg4R2hWouRZqRQG4uJypNS8YK885G838+EHb4nKBY=",
}
ORACLE = openai.OpenAI(api_key="sk-test", base_url="http://127.0.0.1:9/v1").webhooks


def event(event_type: str, data: dict[str, Any] | None = None, event_id: str = "evt_1") -> bytes:
    """An OpenAI webhook event body, as documented (thin: the resource is fetched by data.id)."""
    return orjson.dumps(
        {
            "id": event_id,
            "object": "event",
            "created_at": TS,
            "type": event_type,
            "data": data or {"id": "resp_1"},
        }
    )


async def test_sdk_vector_verifies_and_reads_data_id() -> None:
    """OAI-1 verifies; the job is data.id, response.completed is succeeded, the dedupe key is webhook-id."""
    source = provider("openai", secret=SECRET)
    await source.verify(HEADERS, BODY, TS)
    callback = source.parse(HEADERS, BODY)
    assert (callback.job_id, callback.status) == ("resp_123", Status.SUCCEEDED)
    assert callback.delivery_id == "wh_685c059ae39c8190af8c71ed1022a24d" and callback.error is None


@pytest.mark.parametrize(
    ("change", "now", "code"),
    [
        ({"webhook-signature": "v1,invalid_signature1 v1,invalid_signature2"}, TS, "bad_signature"),
        ({}, TS + 400, "stale_timestamp"),
        ({}, TS - 400, "stale_timestamp"),
        ({"webhook-timestamp": None}, TS, "missing_timestamp"),
        ({"webhook-id": None}, TS, "missing_id"),
        ({"webhook-signature": None}, TS, "missing_signature"),
    ],
)
async def test_sdk_negative_cases_are_refused(change: dict[str, str | None], now: float, code: str) -> None:
    """The SDK suite's negatives (±400 s, two bad signatures) and missing headers: 401 naming the check."""
    headers = {k: v for k, v in {**HEADERS, **change}.items() if v is not None}
    with pytest.raises(Unauthorized) as err:
        await provider("openai", secret=SECRET).verify(headers, BODY, now)
    assert err.value.code == code


async def test_one_good_signature_among_bad_ones_verifies() -> None:
    """`v1,invalid_signature v1,<valid>` verifies, as in the SDK suite."""
    headers = {**HEADERS, "webhook-signature": "v1,invalid_signature " + HEADERS["webhook-signature"]}
    await provider("openai", secret=SECRET).verify(headers, BODY, TS)


@settings(max_examples=40, deadline=None)
@given(
    body=st.dictionaries(st.text(max_size=8), st.text(max_size=16), max_size=4).map(orjson.dumps),
    tamper=st.sampled_from(["none", "body", "signature", "secret"]),
)
async def test_openai_package_agrees(body: bytes, tamper: str) -> None:
    """relay and openai's own webhooks.verify_signature accept and refuse the same callbacks."""
    signer = "whsec_" + "QUJD" * 8 if tamper == "secret" else SECRET
    headers = signed_headers(signer, body)
    if tamper == "body":
        body += b" "
    if tamper == "signature":
        headers["webhook-signature"] = headers["webhook-signature"][:-2] + (
            "A=" if headers["webhook-signature"][-2] != "A" else "B="
        )
    try:
        ORACLE.verify_signature(body, headers, secret=SECRET, tolerance=300)
        oracle_ok = True
    except openai.InvalidWebhookSignatureError:
        oracle_ok = False
    try:
        await provider("openai", secret=SECRET).verify(headers, body, time.time())
        ours_ok = True
    except Unauthorized:
        ours_ok = False
    assert ours_ok == oracle_ok == (tamper == "none")


@pytest.mark.parametrize(("event_type", "status"), sorted(EVENT_STATUSES.items()))
def test_every_documented_job_event_maps(event_type: str, status: Status) -> None:
    """response.*, batch.*, fine_tuning.job.*, eval.run.*, video.*: each to its final relay status."""
    callback = provider("openai", secret=SECRET).parse(
        {"webhook-id": "wh_1"}, event(event_type, {"id": "x_1"})
    )
    assert callback.job_id == "x_1" and callback.status == status
    assert (callback.error is None) == (status == Status.SUCCEEDED)


def test_incomplete_and_expired_are_failures_saying_why() -> None:
    """response.incomplete and batch.expired end the job as failed, the event type as the error."""
    source = provider("openai", secret=SECRET)
    for event_type in ("response.incomplete", "batch.expired"):
        callback = source.parse({"webhook-id": "wh"}, event(event_type))
        assert callback.status == Status.FAILED and callback.error == event_type


def test_unknown_event_type_is_kept_as_running_and_counted() -> None:
    """A type this version does not know is taken as running (never dropped) and counted as a warning."""
    source = provider("openai", secret=SECRET)
    callback = source.parse({"webhook-id": "wh_2"}, event("agent.session.idle", {"id": "sess_1"}))
    assert (callback.job_id, callback.status, callback.error) == ("sess_1", Status.RUNNING, None)
    no_id = source.parse({"webhook-id": "wh_3"}, event("realtime.call.incoming", {"call_id": "c"}, "evt_9"))
    assert (no_id.job_id, no_id.status) == ("evt_9", Status.RUNNING)
    assert source.warnings == {"unknown_event_type": 2}
    [family] = ProviderWarnings({"oai": source}).collect()
    assert [(s.name, s.labels, s.value) for s in family.samples] == [
        ("relay_provider_warnings_total", {"source": "oai", "reason": "unknown_event_type"}, 2.0)
    ]


@pytest.mark.parametrize(
    ("body", "code"),
    [
        (b'{"id": "evt", "data": {"id": "r"}}', "missing_status"),
        (b'{"id": "evt", "type": "response.completed", "data": {}}', "missing_job_id"),
        (b'{"id": "evt", "type": "response.failed", "data": "r"}', "missing_job_id"),
        (b"null", "malformed_json"),
    ],
)
def test_unusable_events_are_400(body: bytes, code: str) -> None:
    """No type, or a job event without data.id: 400 naming it."""
    with pytest.raises(BadRequest) as err:
        provider("openai", secret=SECRET).parse({"webhook-id": "wh"}, body)
    assert err.value.code == code
