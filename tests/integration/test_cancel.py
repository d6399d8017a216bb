"""`POST /v1/jobs/{source}/{job_id}/cancel`: relay asks the provider's own cancel API (faked on 127.0.0.1
with the documented answers) and records the request in the job's history."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import orjson
import pytest

from relay.openapi import document
from tests.conftest import DEMO_SECRET, REPLICATE_SECRET, Relay, open_relay
from tests.fake_provider_api import FakeProviderApi, fake_provider_api
from tests.integration.conftest import SettingsWith
from tests.integration.test_openapi import assert_matches
from tests.integration.test_reconcile import sources

PREDICTION = {"id": "p1", "model": "owner/model", "input": {"prompt": "fox"}, "output": None, "error": None}


def cancel_sources(api: FakeProviderApi) -> dict[str, Any]:
    """The reconcile tests' sources (replicate, fal, runpod, openai with tokens; demo), and some that cannot
    cancel: an unsigned kind, a Replicate source with no token, a RunPod source with no endpoint."""
    return {
        **sources(api),
        "plain": {"kind": "unsigned"},
        "untokened": {"kind": "replicate", "secret": REPLICATE_SECRET, "api_base_url": f"{api.base_url}/v1"},
        "runpod-any": {"kind": "runpod", "api_token": "rp-key", "api_base_url": f"{api.base_url}/v2"},
    }


@pytest.fixture
async def relay(settings_with: SettingsWith, api: FakeProviderApi) -> AsyncIterator[Relay]:
    settings = settings_with(sources=cancel_sources(api), reconcile_timeout_s=0.5)
    async with open_relay(settings, background=False) as opened:
        yield opened


async def register(relay: Relay, source: str, job_id: str, **metadata: Any) -> None:
    response = await relay.client.post(
        "/v1/jobs", json={"source": source, "job_id": job_id, "metadata": metadata}
    )
    assert response.status_code == 201, response.text


async def cancel(relay: Relay, source: str, job_id: str) -> Any:
    return await relay.client.post(f"/v1/jobs/{source}/{job_id}/cancel")


async def history(relay: Relay, source: str, job_id: str) -> list[tuple[str, str]]:
    entries = (await relay.client.get(f"/v1/jobs/{source}/{job_id}/callbacks")).json()["callbacks"]
    return [(entry["status"], entry["via"]) for entry in entries]


async def status(relay: Relay, source: str, job_id: str) -> str:
    return (await relay.client.get(f"/v1/jobs/{source}/{job_id}")).json()["status"]  # type: ignore[no-any-return]


# Each kind's cancel call (method, path under the fake API, credential) and its documented answer when the
# job is canceled at once.
CANCELED_AT_ONCE = {
    "replicate": (
        "p1",
        {},
        ("POST", "/v1/predictions/p1/cancel", "Bearer r8_test"),
        200,
        {
            **PREDICTION,
            "status": "canceled",
            "urls": {"cancel": "https://api.replicate.com/v1/predictions/p1/cancel"},
        },
    ),
    "runpod": (
        "rp-1",
        {},
        ("POST", "/v2/ep1/cancel/rp-1", "Bearer rp-key"),
        200,
        {"id": "rp-1", "status": "CANCELLED"},
    ),
    "openai": (
        "resp_1",
        {},
        ("POST", "/v1/responses/resp_1/cancel", "Bearer sk-test"),
        200,
        {"id": "resp_1", "object": "response", "status": "cancelled", "background": True, "error": None},
    ),
    "fal": (
        "req-1",
        {"model_id": "fal-ai/flux"},
        ("PUT", "/fal-ai/flux/requests/req-1/cancel", "Key fal-key"),
        200,
        {"status": "OK"},
    ),
}


@pytest.mark.parametrize("source", sorted(CANCELED_AT_ONCE))
async def test_a_cancel_the_provider_confirms_cancels_the_job(
    relay: Relay, api: FakeProviderApi, source: str
) -> None:
    """202 with the job canceled: the provider's answer said so; one history entry via cancel, whose delivery
    ID holds the answer's HTTP status; the call went with the source's token, as its API documents."""
    job_id, metadata, (method, path, credential), code, answer = CANCELED_AT_ONCE[source]
    await register(relay, source, job_id, **metadata)
    api.answer(path, answer, status=code)
    response = await cancel(relay, source, job_id)
    assert response.status_code == 202, response.text
    assert response.json()["status"] == "canceled" and response.json()["provider_status_code"] == code
    assert await status(relay, source, job_id) == "canceled"
    entries = (await relay.client.get(f"/v1/jobs/{source}/{job_id}/callbacks")).json()["callbacks"]
    assert [(e["status"], e["via"]) for e in entries] == [("canceled", "cancel")]
    assert entries[0]["delivery_id"].endswith(f":cancel-{code}-canceled")
    assert_matches(document(), "CancelRequested", response.json())
    assert_matches(document(), "CallbackRecord", entries[0])
    assert api.calls == [(method, path)] and api.requests == [(path, credential)]
    events = (await relay.client.get(f"/v1/jobs/{source}/{job_id}/events")).text
    assert "event: job.canceled" in events


async def test_a_replicate_prediction_that_is_still_stopping_is_canceled_by_its_webhook(
    relay: Relay, api: FakeProviderApi
) -> None:
    """Replicate answers the prediction still processing: 202, the job stays pending with the request on
    record (asking again records nothing new), and the `canceled` webhook ends it."""
    await register(relay, "replicate", "p1")
    api.answer("/v1/predictions/p1/cancel", {**PREDICTION, "status": "processing"})
    for _ in range(2):
        response = await cancel(relay, "replicate", "p1")
        assert response.status_code == 202 and response.json()["status"] == "pending"
    assert await history(relay, "replicate", "p1") == [("pending", "cancel")]
    assert len(api.calls) == 2  # each request is sent: a provider's cancel is idempotent
    webhook = orjson.dumps({**PREDICTION, "status": "canceled"})
    assert (await relay.post_callback("replicate", webhook, secret=REPLICATE_SECRET)).status_code == 200
    assert await status(relay, "replicate", "p1") == "canceled"
    assert await history(relay, "replicate", "p1") == [("pending", "cancel"), ("canceled", "webhook")]


async def test_an_openai_batch_cancelling_is_canceled_by_its_webhook(
    relay: Relay, api: FakeProviderApi
) -> None:
    """A batch answers `cancelling`: a running job stays running, and `batch.cancelled` ends it."""
    await register(relay, "openai", "batch_1")
    started = {"id": "evt_1", "object": "event", "type": "batch.in_progress", "data": {"id": "batch_1"}}
    await relay.post_callback("openai", orjson.dumps(started), secret=DEMO_SECRET)
    assert await status(relay, "openai", "batch_1") == "running"
    batch = {"id": "batch_1", "object": "batch", "status": "cancelling", "cancelling_at": 1711074447}
    api.answer("/v1/batches/batch_1/cancel", batch)
    response = await cancel(relay, "openai", "batch_1")
    assert response.status_code == 202 and response.json()["status"] == "running"
    cancelled = {"id": "evt_2", "object": "event", "type": "batch.cancelled", "data": {"id": "batch_1"}}
    await relay.post_callback("openai", orjson.dumps(cancelled), secret=DEMO_SECRET)
    assert await status(relay, "openai", "batch_1") == "canceled"
    assert await history(relay, "openai", "batch_1") == [
        ("running", "webhook"),
        ("running", "cancel"),
        ("canceled", "webhook"),
    ]


async def test_fal_cancellation_requested_and_already_completed(relay: Relay, api: FakeProviderApi) -> None:
    """fal's CANCELLATION_REQUESTED is a 202 (the runner decides); ALREADY_COMPLETED is 409 already_final,
    recorded nowhere: the job's callback says how it ended."""
    for rid in ("r1", "r2"):
        await register(relay, "fal", rid, model_id="fal-ai/flux")
    api.answer("/fal-ai/flux/requests/r1/cancel", {"status": "CANCELLATION_REQUESTED"}, status=202)
    api.answer("/fal-ai/flux/requests/r2/cancel", {"status": "ALREADY_COMPLETED"}, status=400)
    requested = await cancel(relay, "fal", "r1")
    assert requested.status_code == 202 and requested.json()["provider_status_code"] == 202
    assert await history(relay, "fal", "r1") == [("pending", "cancel")]
    too_late = await cancel(relay, "fal", "r2")
    assert too_late.status_code == 409 and too_late.json()["error"]["code"] == "already_final"
    assert await history(relay, "fal", "r2") == [] and await status(relay, "fal", "r2") == "pending"


@pytest.mark.parametrize(
    ("source", "job_id", "names"),
    [
        ("demo", "d1", "no cancel API"),
        ("plain", "u1", "no cancel API"),
        ("untokened", "p1", "sources.untokened.api_token"),
        ("runpod-any", "rp-1", "sources.runpod-any.endpoint_id"),
        ("fal", "req-1", "metadata.model_id"),
        ("openai", "ftjob-1", "resp_"),
    ],
)
async def test_what_relay_cannot_cancel_is_a_409_saying_why(
    relay: Relay, api: FakeProviderApi, source: str, job_id: str, names: str
) -> None:
    """A kind without a cancel API, a source without the token or endpoint, a job without what its URL needs:
    409 cancel_unsupported naming it, and no call."""
    await register(relay, source, job_id)
    response = await cancel(relay, source, job_id)
    assert response.status_code == 409 and response.json()["error"]["code"] == "cancel_unsupported"
    assert names in response.json()["error"]["message"]
    assert api.calls == [] and await history(relay, source, job_id) == []


async def test_a_final_or_unknown_job_and_a_ticket_are_refused(relay: Relay, api: FakeProviderApi) -> None:
    """A job already ended: 409 already_final; no such job or source: 404; a ticket cannot cancel its job."""
    await register(relay, "replicate", "done")
    await relay.post_callback(
        "replicate",
        orjson.dumps({**PREDICTION, "id": "done", "status": "succeeded"}),
        secret=REPLICATE_SECRET,
    )
    final = await cancel(relay, "replicate", "done")
    assert final.status_code == 409 and final.json()["error"]["code"] == "already_final"
    for source, job_id in (("replicate", "nope"), ("nowhere", "x")):
        missing = await cancel(relay, source, job_id)
        assert missing.status_code == 404 and missing.json()["error"]["code"] == "unknown_job"
    registered = await relay.client.post("/v1/jobs", json={"source": "replicate", "job_id": "mine"})
    ticket = registered.json()["ticket"]
    async with relay.anonymous() as anonymous:
        ticketed = await anonymous.post(f"/v1/jobs/replicate/mine/cancel?ticket={ticket}")
        assert ticketed.status_code == 403 and ticketed.json()["error"]["code"] == "ticket_scope"
        assert (await anonymous.post("/v1/jobs/replicate/mine/cancel")).status_code == 401
    assert api.calls == []


async def test_a_provider_that_refuses_or_does_not_answer_is_a_502(
    relay: Relay, api: FakeProviderApi
) -> None:
    """A 500, a 401 whose text repeats part of the key, a call that outlives reconcile_timeout_s: 502
    provider_error with the HTTP status (no provider text, no credential); the job and history unchanged."""
    for job_id in ("err", "denied", "slow"):
        await register(relay, "replicate", job_id)
    api.answer("/v1/predictions/err/cancel", {"detail": "boom"}, status=500)
    api.answer("/v1/predictions/denied/cancel", {"detail": "Invalid token r8_test"}, status=401)
    api.hang.add("/v1/predictions/slow/cancel")
    for job_id, says in (("err", "HTTP 500"), ("denied", "HTTP 401"), ("slow", "within 0.5 s")):
        response = await cancel(relay, "replicate", job_id)
        assert response.status_code == 502 and response.json()["error"]["code"] == "provider_error"
        message = response.json()["error"]["message"]
        assert says in message and "r8_test" not in message
        assert await history(relay, "replicate", job_id) == []
        assert await status(relay, "replicate", job_id) == "pending"


async def test_the_cancel_url_is_built_from_the_api_base_and_the_id_only(
    relay: Relay, api: FakeProviderApi
) -> None:
    """A job's metadata naming another host's cancel URL is not used, and the token goes to the configured API
    only; an ID of `..` or with `/` stays one escaped segment."""
    async with fake_provider_api() as elsewhere:
        foreign = f"{elsewhere.base_url}/v1/predictions/p1/cancel"
        await register(relay, "replicate", "p1", cancel_url=foreign, status_url=foreign)
        api.answer("/v1/predictions/p1/cancel", {**PREDICTION, "status": "canceled"})
        assert (await cancel(relay, "replicate", "p1")).status_code == 202
        for job_id, sent in (("..", "%2E%2E"), ("a/b", "a%2Fb")):
            await register(relay, "replicate", job_id)
            assert (await cancel(relay, "replicate", sent)).status_code == 502  # the fake knows no such path
        assert elsewhere.requests == []
    assert api.calls == [
        ("POST", "/v1/predictions/p1/cancel"),
        (
            "POST",
            "/v1/predictions/../cancel",
        ),  # the fake decodes the path it was sent: `%2E%2E` as one segment
        ("POST", "/v1/predictions/a/b/cancel"),
    ]
    assert {credential for _, credential in api.requests} == {"Bearer r8_test"}
