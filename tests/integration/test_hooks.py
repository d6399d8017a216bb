"""Inbound callbacks: verification, dedupe, bad input, limits (the ones a socket shows over real HTTP)."""

from __future__ import annotations

import asyncio
import time

import orjson
import pytest

from tests.conftest import (
    DEMO_SECRET,
    REPLICATE_SECRET,
    LiveRelay,
    Relay,
    open_relay,
    signed_headers,
    start_relay,
    wait_for,
)
from tests.integration.conftest import SettingsWith


def body(job_id: str = "j1", status: str = "succeeded", **extra: object) -> bytes:
    return orjson.dumps({"id": job_id, "status": status, **extra})


async def stored_callbacks(relay: Relay, job_id: str) -> int:
    return len(await relay.services.store.list_callbacks("demo", job_id))


async def test_accepted_callback_is_stored_and_answered(relay: Relay) -> None:
    """A signed final callback is answered 200 and the job holds its result."""
    response = await relay.post_callback("demo", body(output=["a.png"]))
    assert response.status_code == 200
    assert response.json() == {"accepted": True, "source": "demo", "job_id": "j1", "duplicate": False}
    job = (await relay.client.get("/v1/jobs/demo/j1")).json()
    assert job["status"] == "succeeded" and job["result"]["output"] == ["a.png"] and job["callbacks"] == 1


async def test_redelivery_is_answered_duplicate(relay: Relay) -> None:
    """The same webhook-id again is 200 duplicate: true, and nothing new is stored."""
    payload = body()
    first = await relay.post_callback("demo", payload, msg_id="msg_same")
    again = await relay.post_callback("demo", payload, msg_id="msg_same")
    assert first.json()["duplicate"] is False and again.json()["duplicate"] is True
    assert await stored_callbacks(relay, "j1") == 1


async def test_second_final_callback_is_duplicate_but_kept(relay: Relay) -> None:
    """Another final status with a new delivery ID is duplicate: true and only joins the history."""
    await relay.post_callback("demo", body(status="succeeded", output=1))
    second = await relay.post_callback("demo", body(status="failed", error="late"))
    assert second.status_code == 200 and second.json()["duplicate"] is True
    job = (await relay.client.get("/v1/jobs/demo/j1")).json()
    assert job["status"] == "succeeded" and job["error"] is None and job["callbacks"] == 2
    assert await stored_callbacks(relay, "j1") == 2


async def test_duplicate_storm_makes_one_transition(relay: Relay) -> None:
    """64 concurrent copies of one final callback over HTTP: one accepted, 63 duplicates."""
    payload = body(output="x")
    headers = signed_headers(DEMO_SECRET, payload, msg_id="msg_storm")
    answers = await asyncio.gather(
        *(relay.client.post("/hooks/demo", content=payload, headers=headers) for _ in range(64))
    )
    assert all(a.status_code == 200 for a in answers)
    assert sorted(a.json()["duplicate"] for a in answers) == [False] + [True] * 63
    assert await stored_callbacks(relay, "j1") == 1


@pytest.mark.parametrize(
    ("mutate", "code"),
    [
        (lambda h: h.update({"webhook-signature": "v1,AAAA" + h["webhook-signature"][7:]}), "bad_signature"),
        (lambda h: h.pop("webhook-signature"), "missing_signature"),
        (lambda h: h.pop("webhook-id"), "missing_id"),
        (lambda h: h.pop("webhook-timestamp"), "missing_timestamp"),
        (lambda h: h.update({"webhook-timestamp": "12.5"}), "bad_timestamp"),
    ],
)
async def test_bad_signatures_are_refused_and_nothing_stored(relay: Relay, mutate: object, code: str) -> None:
    """Missing or wrong signature headers: 401 with the check that failed, nothing stored."""
    payload = body()
    headers = signed_headers(DEMO_SECRET, payload)
    mutate(headers)  # type: ignore[operator]
    response = await relay.client.post("/hooks/demo", content=payload, headers=headers)
    assert response.status_code == 401
    assert response.json()["error"]["code"] == code
    assert await relay.services.store.get_job("demo", "j1") is None


async def test_signature_from_another_secret_is_refused(relay: Relay) -> None:
    """A callback signed with another source's secret is 401."""
    response = await relay.post_callback("demo", body(), secret=REPLICATE_SECRET)
    assert response.status_code == 401 and response.json()["error"]["code"] == "bad_signature"


# Beyond 300 s by a margin: the header holds whole seconds (truncated) and the relay reads its clock a little
# later than the test did, so +301 could land at 300.4 s. tests/unit/test_signing.py tests the exact edge.
@pytest.mark.parametrize("skew", [-305, 305])
async def test_timestamp_outside_tolerance_is_refused(relay: Relay, skew: int) -> None:
    """Signed too long ago or too far ahead: 401 stale_timestamp, nothing stored."""
    response = await relay.post_callback("demo", body(), timestamp=time.time() + skew)
    assert response.status_code == 401 and response.json()["error"]["code"] == "stale_timestamp"
    assert await relay.services.store.get_job("demo", "j1") is None


@pytest.mark.parametrize(
    ("payload", "code"),
    [
        (b'{"id": "j1", "status": ', "malformed_json"),
        (b'["j1", "succeeded"]', "malformed_json"),
        (b'{"status": "succeeded"}', "missing_job_id"),
        (b'{"id": "", "status": "succeeded"}', "bad_job_id"),
        (b'{"id": "j1"}', "missing_status"),
        (b'{"id": "j1", "status": "exploded"}', "unknown_status"),
    ],
)
async def test_bad_bodies_are_400_and_nothing_stored(relay: Relay, payload: bytes, code: str) -> None:
    """Correctly signed but unusable bodies: 400 naming the problem, nothing stored."""
    response = await relay.post_callback("demo", payload)
    assert response.status_code == 400
    assert response.json()["error"]["code"] == code
    assert await relay.services.store.count_jobs_by_status() == {}


async def test_unknown_source_is_404(relay: Relay) -> None:
    """A source that is not configured: 404 unknown_source."""
    response = await relay.post_callback("nope", body())
    assert response.status_code == 404 and response.json()["error"]["code"] == "unknown_source"


async def test_oversized_body_with_length_is_413(settings_with: SettingsWith) -> None:
    """A declared body over max_body_bytes is refused with 413 and nothing stored."""
    async with open_relay(settings_with(max_body_bytes=1024)) as relay:
        response = await relay.post_callback("demo", body(pad="x" * 2000))
        assert response.status_code == 413 and response.json()["error"]["code"] == "body_too_large"
        assert await relay.services.store.get_job("demo", "j1") is None


async def test_oversized_chunked_body_is_refused_while_streaming(settings_with: SettingsWith) -> None:
    """A chunked body is refused as soon as it passes the limit, before the sender has finished it."""
    async with start_relay(settings_with(max_body_bytes=4096)) as relay:
        port = int(relay.base_url.rsplit(":", 1)[1])
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        head = signed_headers(DEMO_SECRET, b"{}")
        lines = [f"{k}: {v}" for k, v in head.items()]
        writer.write(
            (
                "POST /hooks/demo HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\n"
                + "\r\n".join(lines)
                + "\r\n\r\n"
            ).encode()
        )
        chunk = b"x" * 1024
        for _ in range(8):  # 8 KiB sent, the body never terminated
            writer.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
        await writer.drain()
        status_line = await asyncio.wait_for(reader.readline(), 10)
        writer.close()
        assert status_line.startswith(b"HTTP/1.1 413")
        assert await relay.services.store.count_jobs_by_status() == {}


async def test_sender_hanging_up_mid_body_stores_nothing(live_relay: LiveRelay) -> None:
    """A sender that closes its connection before the declared body is complete is counted, not stored."""
    relay = live_relay
    port = int(relay.base_url.rsplit(":", 1)[1])
    payload = body()
    head = signed_headers(DEMO_SECRET, payload)
    lines = "".join(f"{k}: {v}\r\n" for k, v in head.items())
    _, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(
        f"POST /hooks/demo HTTP/1.1\r\nhost: x\r\ncontent-length: {len(payload)}\r\n{lines}\r\n".encode()
    )
    writer.write(payload[:10])
    await writer.drain()
    writer.close()
    line = 'relay_callbacks_total{outcome="rejected",reason="client_disconnect",source="demo"} 1.0'

    async def counted() -> bool:
        return line in (await relay.client.get("/metrics")).text

    await wait_for(counted)
    assert await relay.services.store.count_jobs_by_status() == {}
    assert (await relay.post_callback("demo", payload)).status_code == 200  # and the relay goes on


async def test_only_post_reaches_the_hook(relay: Relay) -> None:
    """Another method on a hook URL is 405, in the API's error shape, naming POST, and stores nothing."""
    response = await relay.client.get("/hooks/demo")
    assert response.status_code == 405 and response.headers["allow"] == "POST"
    assert response.json()["error"]["code"] == "method_not_allowed"
    assert await relay.services.store.count_jobs_by_status() == {}


async def test_an_unknown_path_is_404_in_the_error_shape(relay: Relay) -> None:
    """A path relay does not serve answers the API's error body too."""
    response = await relay.client.post("/hooks")
    assert response.status_code == 404 and response.json()["error"]["code"] == "not_found"


async def test_replicate_statuses_map_to_relay_statuses(relay: Relay) -> None:
    """Replicate's lifecycle: starting/processing are running, aborted is canceled."""
    for job_id, status, expected in [
        ("p1", "starting", "running"),
        ("p2", "processing", "running"),
        ("p3", "succeeded", "succeeded"),
        ("p4", "failed", "failed"),
        ("p5", "canceled", "canceled"),
        ("p6", "aborted", "canceled"),
    ]:
        payload = orjson.dumps({"id": job_id, "status": status, "output": None, "error": None})
        response = await relay.post_callback("replicate", payload, secret=REPLICATE_SECRET)
        assert response.status_code == 200, response.text
        job = (await relay.client.get(f"/v1/jobs/replicate/{job_id}")).json()
        assert job["status"] == expected


async def test_metrics_count_outcomes(relay: Relay) -> None:
    """/metrics counts accepted, duplicate and rejected callbacks by source and reason."""
    await relay.post_callback("demo", body(), msg_id="m1")
    await relay.post_callback("demo", body(), msg_id="m1")
    await relay.post_callback("demo", body(), timestamp=0)
    text = (await relay.client.get("/metrics")).text
    assert 'relay_callbacks_total{outcome="accepted",reason="",source="demo"} 1.0' in text
    assert 'relay_callbacks_total{outcome="duplicate",reason="",source="demo"} 1.0' in text
    assert 'relay_callbacks_total{outcome="rejected",reason="stale_timestamp",source="demo"} 1.0' in text
    assert 'relay_jobs{status="succeeded"} 1.0' in text
    assert "relay_ingest_seconds_count 2.0" in text


async def test_provider_warnings_are_exported(settings_with: SettingsWith) -> None:
    """A callback taken but not understood (an unknown OpenAI event type) shows in /metrics by reason."""
    sources = {"openai": {"kind": "openai", "secret": DEMO_SECRET}}
    async with open_relay(settings_with(sources=sources)) as relay:
        payload = orjson.dumps({"id": "evt_1", "type": "image.generated", "data": {"id": "img_1"}})
        response = await relay.post_callback("openai", payload)
        assert response.status_code == 200 and response.json()["job_id"] == "img_1"
        text = (await relay.client.get("/metrics")).text
        assert 'relay_provider_warnings_total{reason="unknown_event_type",source="openai"} 1.0' in text
