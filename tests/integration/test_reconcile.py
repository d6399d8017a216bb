"""Before giving up on a job, relay asks the provider's status endpoint (fake APIs on 127.0.0.1)."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any

import pytest

from relay.sweeper import Sweeper
from tests.conftest import (
    DEMO_SECRET,
    REPLICATE_SECRET,
    Clock,
    Relay,
    open_relay,
    wait_for,
)
from tests.fake_provider_api import FakeProviderApi
from tests.integration.conftest import SettingsWith
from tests.integration.test_hostile_input import nested

T0 = 1_900_000_000.0


@pytest.fixture
def clock() -> Clock:
    return Clock(T0)


def sources(api: FakeProviderApi, **replicate: Any) -> dict[str, Any]:
    common = {"timeout_s": 100, "max_deadline_s": 300}
    return {
        "replicate": {
            "kind": "replicate",
            "secret": REPLICATE_SECRET,
            "api_token": "r8_test",
            "api_base_url": f"{api.base_url}/v1",
            **common,
            **replicate,
        },
        "fal": {
            "kind": "fal",
            "api_token": "fal-key",
            "api_base_url": api.base_url,
            "jwks_url": f"{api.base_url}/jwks",
            **common,
        },
        "runpod": {
            "kind": "runpod",
            "api_token": "rp-key",
            "api_base_url": f"{api.base_url}/v2",
            "endpoint_id": "ep1",
            **common,
        },
        "openai": {
            "kind": "openai",
            "secret": DEMO_SECRET,
            "api_token": "sk-test",
            "api_base_url": f"{api.base_url}/v1",
            **common,
        },
        "demo": {"kind": "standard-webhooks", "secret": DEMO_SECRET, **common},
    }


@pytest.fixture
async def relay(settings_with: SettingsWith, api: FakeProviderApi, clock: Clock) -> AsyncIterator[Relay]:
    settings = settings_with(sources=sources(api), reconcile_concurrency=2, reconcile_timeout_s=0.5)
    async with open_relay(settings, clock=clock, background=False) as opened:
        yield opened


async def register(relay: Relay, source: str, job_id: str, **fields: Any) -> None:
    response = await relay.client.post("/v1/jobs", json={"source": source, "job_id": job_id, **fields})
    assert response.status_code == 201, response.text


async def job(relay: Relay, source: str, job_id: str) -> dict[str, Any]:
    return (await relay.client.get(f"/v1/jobs/{source}/{job_id}")).json()  # type: ignore[no-any-return]


async def sweep(relay: Relay, now: float) -> int:
    return await relay.services.loop(Sweeper).run_once(now)


async def test_replicate_final_answer_is_ingested_as_reconcile(relay: Relay, api: FakeProviderApi) -> None:
    """An overdue Replicate job whose prediction succeeded gets that result, recorded via reconcile."""
    await register(relay, "replicate", "p1")
    api.answer("/v1/predictions/p1", {"id": "p1", "status": "succeeded", "output": ["x.png"], "error": None})
    await sweep(relay, T0 + 101)
    done = await job(relay, "replicate", "p1")
    assert done["status"] == "succeeded" and done["result"]["output"] == ["x.png"] and not done["late"]
    history = (await relay.client.get("/v1/jobs/replicate/p1/callbacks")).json()["callbacks"]
    assert [(h["status"], h["via"]) for h in history] == [("succeeded", "reconcile")]
    assert api.requests == [("/v1/predictions/p1", "Bearer r8_test")]


async def test_still_running_extends_the_deadline_up_to_the_cap(relay: Relay, api: FakeProviderApi) -> None:
    """A running answer moves the deadline on, never past created + max_deadline_s; then it times out."""
    await register(relay, "replicate", "p1")
    api.answer("/v1/predictions/p1", {"id": "p1", "status": "processing"})
    await sweep(relay, T0 + 101)
    assert (await job(relay, "replicate", "p1"))["status"] == "pending"
    assert (await relay.services.store.get_job("replicate", "p1")).deadline == T0 + 201  # type: ignore[union-attr]
    await sweep(relay, T0 + 250)
    assert (await relay.services.store.get_job("replicate", "p1")).deadline == T0 + 300  # type: ignore[union-attr]
    await sweep(relay, T0 + 301)  # the cap is reached: still running is no longer enough
    assert (await job(relay, "replicate", "p1"))["status"] == "timed_out"
    assert len(api.requests) == 3


async def test_provider_errors_and_hangs_mean_timed_out(relay: Relay, api: FakeProviderApi) -> None:
    """A 500, a 404 or a call that outlives reconcile_timeout_s is no answer: the job times out."""
    for job_id in ("err", "gone", "slow"):
        await register(relay, "replicate", job_id)
    api.answer("/v1/predictions/err", {"detail": "boom"}, status=500)
    api.hang.add("/v1/predictions/slow")
    await sweep(relay, T0 + 101)
    for job_id in ("err", "gone", "slow"):
        assert (await job(relay, "replicate", job_id))["status"] == "timed_out"


async def test_a_provider_answer_nested_too_deep_is_no_answer(relay: Relay, api: FakeProviderApi) -> None:
    """A status answer nested past the depth a callback may have is not stored: the job times out."""
    await register(relay, "replicate", "deep")
    api.answer("/v1/predictions/deep", {"id": "deep", "status": "succeeded", "output": nested(101)})
    await sweep(relay, T0 + 101)
    assert api.paths() == ["/v1/predictions/deep"]
    assert (await job(relay, "replicate", "deep"))["status"] == "timed_out"


async def test_a_provider_error_holding_nul_is_taken(relay: Relay, api: FakeProviderApi) -> None:
    """A failed answer whose error message holds NUL fails the job with that message (U+FFFD in the NUL's
    place, as no backend's text holds one), not a reconcile that breaks and a job timed out."""
    await register(relay, "replicate", "p1")
    api.answer("/v1/predictions/p1", {"id": "p1", "status": "failed", "error": "NSFW\x00", "output": None})
    await sweep(relay, T0 + 101)
    failed = await job(relay, "replicate", "p1")
    assert (failed["status"], failed["error"]) == ("failed", "NSFW\ufffd")


async def test_reconcile_calls_are_bounded(relay: Relay, api: FakeProviderApi) -> None:
    """Six hanging calls with reconcile_concurrency 2 and a 0.5 s timeout run in three waves, not one."""
    for i in range(6):
        await register(relay, "replicate", f"h{i}")
        api.hang.add(f"/v1/predictions/h{i}")
    started = time.monotonic()
    await sweep(relay, T0 + 101)
    # A lower bound only: unbounded, all six would time out together after 0.5 s.
    assert time.monotonic() - started >= 3 * 0.5 - 0.05
    assert len(api.requests) == 6
    await wait_for(lambda: api.in_flight == 0)  # every hanging call was hung up on


async def test_no_token_no_call(settings_with: SettingsWith, api: FakeProviderApi, clock: Clock) -> None:
    """Without an API token the provider is not asked and the job times out at its deadline."""
    settings = settings_with(sources=sources(api, api_token=None))
    async with open_relay(settings, clock=clock, background=False) as relay:
        await register(relay, "replicate", "p1")
        await sweep(relay, T0 + 101)
        assert (await job(relay, "replicate", "p1"))["status"] == "timed_out"
    assert api.requests == []


async def test_fal_queue_status_then_response(relay: Relay, api: FakeProviderApi) -> None:
    """fal: IN_PROGRESS extends; COMPLETED fetches the response; COMPLETED with an error is failed."""
    queue = "/fal-ai/flux/requests"
    for rid in ("r1", "r2", "r3"):
        await register(relay, "fal", rid, metadata={"model_id": "fal-ai/flux"})
    api.answer(f"{queue}/r1/status", {"status": "IN_PROGRESS", "logs": []})
    api.answer(f"{queue}/r2/status", {"status": "COMPLETED", "metrics": {"inference_time": 1.2}})
    api.answer(f"{queue}/r2", {"images": [{"url": "https://fal.media/a.png"}]})
    api.answer(
        f"{queue}/r3/status",
        {"status": "COMPLETED", "error": "Invalid status code: 422", "error_type": "RequestError"},
    )
    await sweep(relay, T0 + 101)
    assert (await job(relay, "fal", "r1"))["status"] == "pending"
    r2 = await job(relay, "fal", "r2")
    assert r2["status"] == "succeeded" and r2["result"] == {"images": [{"url": "https://fal.media/a.png"}]}
    r3 = await job(relay, "fal", "r3")
    assert r3["status"] == "failed" and r3["error"] == "Invalid status code: 422"
    assert {auth for _, auth in api.requests} == {"Key fal-key"}


async def test_fal_without_model_or_urls_is_not_asked(relay: Relay, api: FakeProviderApi) -> None:
    """fal's status URL needs the model (or the URLs from the submit answer); without them, no call."""
    await register(relay, "fal", "r9")
    await sweep(relay, T0 + 101)
    assert (await job(relay, "fal", "r9"))["status"] == "timed_out" and api.requests == []


async def test_runpod_status_endpoint(relay: Relay, api: FakeProviderApi) -> None:
    """RunPod: /{endpoint}/status/{id} answers the job envelope; COMPLETED is succeeded with its output."""
    await register(relay, "runpod", "rp-1")
    await register(relay, "runpod", "rp-2")
    api.answer(
        "/v2/ep1/status/rp-1",
        {
            "id": "rp-1",
            "status": "COMPLETED",
            "output": {"video": "v.mp4"},
            "delayTime": 12,
            "executionTime": 3400,
        },
    )
    api.answer("/v2/ep1/status/rp-2", {"id": "rp-2", "status": "FAILED", "error": "CUDA out of memory"})
    await sweep(relay, T0 + 101)
    assert (await job(relay, "runpod", "rp-1"))["result"] == {"video": "v.mp4"}
    failed = await job(relay, "runpod", "rp-2")
    assert failed["status"] == "failed" and failed["error"] == "CUDA out of memory"


async def test_openai_resources_by_id_prefix(relay: Relay, api: FakeProviderApi) -> None:
    """OpenAI: a response is retrieved from /responses, a batch from /batches, by the ID's prefix."""
    await register(relay, "openai", "resp_1")
    await register(relay, "openai", "batch_1")
    api.answer("/v1/responses/resp_1", {"id": "resp_1", "object": "response", "status": "completed"})
    api.answer("/v1/batches/batch_1", {"id": "batch_1", "object": "batch", "status": "finalizing"})
    await sweep(relay, T0 + 101)
    assert (await job(relay, "openai", "resp_1"))["status"] == "succeeded"
    assert (await job(relay, "openai", "batch_1"))["status"] == "pending"
    assert sorted(api.paths()) == ["/v1/batches/batch_1", "/v1/responses/resp_1"]


async def test_early_reconcile_asks_once(
    settings_with: SettingsWith, api: FakeProviderApi, clock: Clock
) -> None:
    """reconcile_after_s asks once before the deadline: a final answer finishes the job early."""
    settings = settings_with(sources=sources(api, reconcile_after_s=30))
    async with open_relay(settings, clock=clock, background=False) as relay:
        await register(relay, "replicate", "early")
        await register(relay, "replicate", "busy")
        api.answer("/v1/predictions/early", {"id": "early", "status": "failed", "error": "NSFW"})
        api.answer("/v1/predictions/busy", {"id": "busy", "status": "starting"})
        assert await sweep(relay, T0 + 29) == 0
        await sweep(relay, T0 + 31)
        early = await job(relay, "replicate", "early")
        assert early["status"] == "failed" and early["error"] == "NSFW"
        assert (await job(relay, "replicate", "busy"))["status"] == "pending"
        await sweep(relay, T0 + 60)  # asked once only
        assert api.paths().count("/v1/predictions/busy") == 1
