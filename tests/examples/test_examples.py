"""Each provider example run as a user runs it, against a real relay, with a fake of the provider's API on
loopback that checks the documented submit request, answers it, and then sends the documented webhook,
signed as the provider signs it, to the URL it was given."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import parse_qs, urlsplit

import orjson

from tests.conftest import REPLICATE_SECRET, LiveRelay, signed_headers
from tests.examples.conftest import Tls, post_once_waited_on, run_example
from tests.examples.fake_provider import FakeProvider, Request
from tests.unit.providers.support import FIXTURE_KEY, fal_body, fal_headers

PROMPT = "a red fox"


async def registered(relay: LiveRelay, source: str, job_id: str) -> dict[str, Any]:
    answer = await relay.client.get(f"/v1/jobs/{source}/{job_id}")
    assert answer.status_code == 200, answer.text
    return dict(answer.json())


# fal

FAL_REQUEST_ID = "764cabcf-b745-4b3e-ae38-1200304cf45b"
FAL_OUTPUT = {
    "images": [{"url": "https://v3.fal.media/files/fox.jpeg", "width": 1024, "height": 768}],
    "seed": 42,
    "has_nsfw_concepts": [False],
    "prompt": PROMPT,
}


async def test_fal_example_submits_with_relays_url_and_prints_the_result(relay: LiveRelay, tls: Tls) -> None:
    """examples/fal_queue.py: fal_client.submit(..., webhook_url=relay's), then the fal webhook (ed25519,
    fal's JWKS) ends relay.wait() and the output is printed."""
    hook = relay.services.webhook_url("fal")
    assert hook == f"{relay.base_url}/hooks/fal"

    async def queue(request: Request) -> tuple[int, Any]:
        # fal's queue: POST https://queue.fal.run/{model}?fal_webhook=URL with the arguments as the body
        target = urlsplit(request.target)
        assert (request.method, target.path) == ("POST", "/fal-ai/flux/schnell")
        assert parse_qs(target.query) == {"fal_webhook": [hook]}
        assert request.headers["authorization"] == "Key fal-test-key"
        assert request.json() == {"prompt": PROMPT}
        body = fal_body(FAL_REQUEST_ID, payload=FAL_OUTPUT)
        headers = fal_headers(FIXTURE_KEY, body, FAL_REQUEST_ID)
        provider.later(post_once_waited_on(relay, hook, body, headers))
        request_url = f"https://queue.fal.run/fal-ai/flux/requests/{FAL_REQUEST_ID}"
        return 200, {
            "status": "IN_QUEUE",
            "request_id": FAL_REQUEST_ID,
            "gateway_request_id": FAL_REQUEST_ID,
            "response_url": request_url,
            "status_url": f"{request_url}/status",
            "cancel_url": f"{request_url}/cancel",
            "queue_position": 0,
        }

    async with FakeProvider(queue, tls.server) as provider:
        done = await run_example(
            "fal_queue",
            relay,
            PROMPT,
            FAL_KEY="fal-test-key",
            FAL_QUEUE_RUN_HOST=provider.host,  # fal_client's own setting: the queue's host, over HTTPS
            SSL_CERT_FILE=str(tls.ca_file),
        )
        assert done.code == 0, done.stderr
    assert json.loads(done.stdout) == FAL_OUTPUT
    job = await registered(relay, "fal", FAL_REQUEST_ID)
    assert job["status"] == "succeeded" and job["metadata"]["prompt"] == PROMPT
    assert job["metadata"]["status_url"].endswith(f"/requests/{FAL_REQUEST_ID}/status")


# Replicate

PREDICTION_ID = "gm3qorzdhgbfurvjtvhg6dckhu"
REPLICATE_OUTPUT = ["https://replicate.delivery/xezq/fox.webp"]


def prediction(status: str, **fields: Any) -> dict[str, Any]:
    """A prediction object as Replicate's API and webhooks carry it."""
    api = f"https://api.replicate.com/v1/predictions/{PREDICTION_ID}"
    return {
        "id": PREDICTION_ID,
        "model": "black-forest-labs/flux-schnell",
        "version": "hidden",
        "input": {"prompt": PROMPT},
        "logs": "",
        "output": None,
        "data_removed": False,
        "error": None,
        "status": status,
        "created_at": "2026-11-28T17:00:00.000Z",
        "started_at": None,
        "completed_at": None,
        "metrics": {},
        "urls": {"cancel": f"{api}/cancel", "get": api, "web": f"https://replicate.com/p/{PREDICTION_ID}"},
        **fields,
    }


async def replicate_webhooks(relay: LiveRelay, hook: str) -> None:
    """`start` at once (it may reach relay before the example registers), `completed` once it waits."""
    started = orjson.dumps(prediction("processing", started_at="2026-11-28T17:00:01.000Z"))
    await post_once_waited_on(relay, hook, started, signed_headers(REPLICATE_SECRET, started))
    completed = orjson.dumps(
        prediction(
            "succeeded",
            output=REPLICATE_OUTPUT,
            started_at="2026-11-28T17:00:01.000Z",
            completed_at="2026-11-28T17:00:02.000Z",
            metrics={"predict_time": 0.8},
        )
    )
    await post_once_waited_on(relay, hook, completed, signed_headers(REPLICATE_SECRET, completed))


async def test_replicate_example_creates_with_relays_url_and_prints_the_output(relay: LiveRelay) -> None:
    """examples/replicate_prediction.py: replicate.predictions.create(webhook=relay's, start and completed),
    then Replicate's signed webhooks end relay.wait() and the output is printed."""
    hook = relay.services.webhook_url("replicate")
    assert hook == f"{relay.base_url}/hooks/replicate"

    async def api(request: Request) -> tuple[int, Any]:
        assert (request.method, request.target) == (
            "POST",
            "/v1/models/black-forest-labs/flux-schnell/predictions",
        )
        assert request.headers["authorization"] == "Bearer r8_test"
        assert request.json() == {
            "input": {"prompt": PROMPT},
            "webhook": hook,
            "webhook_events_filter": ["start", "completed"],
        }
        provider.later(replicate_webhooks(relay, hook))
        return 201, prediction("starting")

    async with FakeProvider(api) as provider:
        done = await run_example(
            "replicate_prediction",
            relay,
            PROMPT,
            REPLICATE_API_TOKEN="r8_test",
            REPLICATE_BASE_URL=provider.base_url,
        )
        assert done.code == 0, done.stderr
    assert json.loads(done.stdout) == REPLICATE_OUTPUT
    job = await registered(relay, "replicate", PREDICTION_ID)
    assert job["status"] == "succeeded" and job["callbacks"] == 2
    assert job["metadata"] == {"prompt": PROMPT, "model": "black-forest-labs/flux-schnell"}


# RunPod

RUNPOD_JOB_ID = "60902e6c-08a1-426e-9cb9-9eaec90f5e2b-u1"
RUNPOD_OUTPUT = {"image_url": "https://example.com/fox.png"}


async def test_runpod_example_runs_with_relays_token_url_and_prints_the_output(relay: LiveRelay) -> None:
    """examples/runpod_run.py: POST /v2/{endpoint}/run with relay's token URL as `webhook`; RunPod's unsigned
    webhook to that URL ends relay.wait() and the output is printed."""
    hook = relay.services.webhook_url("runpod")
    assert hook.startswith(f"{relay.base_url}/hooks/runpod/")  # the token is the credential

    async def api(request: Request) -> tuple[int, Any]:
        assert (request.method, request.target) == ("POST", "/v2/ep-test/run")
        assert request.headers["authorization"] == "Bearer rp_test"
        sent = request.json()
        assert sent == {"input": {"prompt": PROMPT}, "webhook": hook}
        finished = {
            "id": RUNPOD_JOB_ID,
            "status": "COMPLETED",
            "output": RUNPOD_OUTPUT,
            "delayTime": 824,
            "executionTime": 2170,
            **sent,
        }
        headers = {"content-type": "application/json"}
        provider.later(post_once_waited_on(relay, hook, orjson.dumps(finished), headers))
        return 200, {"id": RUNPOD_JOB_ID, "status": "IN_QUEUE"}

    async with FakeProvider(api) as provider:
        done = await run_example(
            "runpod_run",
            relay,
            PROMPT,
            RUNPOD_API_KEY="rp_test",
            RUNPOD_ENDPOINT_ID="ep-test",
            RUNPOD_API_BASE=f"{provider.base_url}/v2",
        )
        assert done.code == 0, done.stderr
    assert json.loads(done.stdout) == RUNPOD_OUTPUT
    job = await registered(relay, "runpod", RUNPOD_JOB_ID)
    assert job["status"] == "succeeded" and job["metadata"] == {"prompt": PROMPT, "endpoint_id": "ep-test"}
