"""Deliveries to real subscriber servers on 127.0.0.1: the request, retries, isolation, order, the guard.

Time-dependent behaviour (backoff, Retry-After, the circuit breaker) runs with the background loops off and
an explicit clock: each test drives `Deliverer.run_once(now)` and waits for the attempts it started.
"""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
import pytest
from click.testing import CliRunner

from relay.cli import main as cli
from relay.delivery import Deliverer
from relay.delivery_http import RESPONSE_HEAD_BYTES
from relay.outbox_models import DeliveryStatus
from relay.settings import Settings
from relay.sweeper import Sweeper
from tests.conftest import Clock, Relay, free_port, open_relay, start_relay, wait_for
from tests.integration.conftest import SettingsWith
from tests.subscriber import HANG, Reply, subscriber

SIGNING_SECRET = "whsec_c2lnbmluZy1zZWNyZXQtZm9yLXRlc3Rz"


def settings_for(settings_with: SettingsWith, **overrides: Any) -> Settings:
    """Test settings that let subscribers sit on loopback."""
    return settings_with(allow_private_destinations=True, **overrides)


async def subscribe(relay: Relay, url: str, **fields: Any) -> dict[str, Any]:
    response = await relay.client.post("/v1/subscriptions", json={"url": url, **fields})
    assert response.status_code == 201, response.text
    return response.json()  # type: ignore[no-any-return]


async def callback(relay: Relay, job_id: str, status: str = "succeeded", clock: Clock | None = None) -> None:
    body = orjson.dumps({"id": job_id, "status": status, "output": [f"https://cdn.example/{job_id}.png"]})
    response = await relay.post_callback("demo", body, timestamp=None if clock is None else clock.now)
    assert response.status_code == 200, response.text


async def deliver(relay: Relay, now: float) -> int:
    """One deliverer round at `now`, and the attempts it started, to the end."""
    deliverer = relay.services.loop(Deliverer)
    claimed = await deliverer.run_once(now)
    await deliverer.drain()
    return claimed


async def deliveries(relay: Relay, **params: str) -> list[dict[str, Any]]:
    response = await relay.client.get("/v1/deliveries", params=params)
    assert response.status_code == 200, response.text
    return response.json()["deliveries"]  # type: ignore[no-any-return]


async def test_a_delivery_is_the_documented_signed_request(settings_with: SettingsWith) -> None:
    """POST url, body {id, type, timestamp, data: job}, webhook-id the event id; the oracle verifies it."""
    async with subscriber() as sub, open_relay(settings_for(settings_with)) as relay:
        subscription = await subscribe(relay, sub.url, source="demo")
        await relay.client.post("/v1/jobs", json={"source": "demo", "job_id": "j", "metadata": {"p": "fox"}})
        await callback(relay, "j")
        (got,) = await sub.received_at_least(1)
        event = got.verify(subscription["secret"])
        job = (await relay.client.get("/v1/jobs/demo/j")).json()
        (stored,) = await relay.services.store.list_events("demo", "j")
        assert event == stored.to_public() and event["data"] == job
        assert (event["type"], got.webhook_id, got.path) == ("job.succeeded", stored.event_id, "/hook")
        assert got.headers["content-type"] == "application/json"
        await wait_for(lambda: _delivered(relay, 1))
        (listed,) = await deliveries(relay)
        assert (listed["status"], listed["event_id"], listed["subscription_id"]) == (
            "delivered",
            stored.event_id,
            subscription["id"],
        )
        (attempt,) = listed["attempts"]
        assert (attempt["status_code"], attempt["response"], attempt["error"]) == (200, "ok", None)
        assert attempt["latency_ms"] > 0


async def _delivered(relay: Relay, n: int) -> bool:
    return len(await deliveries(relay, status="delivered")) >= n


async def test_per_job_subscribers_and_ones_added_after_the_result(settings_with: SettingsWith) -> None:
    """Per-job subscribers are signed with signing_secret; one added after the job ended gets the result."""
    settings = settings_for(settings_with, signing_secret=SIGNING_SECRET)
    async with subscriber() as early, subscriber() as late, open_relay(settings) as relay:
        job = {"source": "demo", "job_id": "j", "subscribers": [early.url]}
        assert (await relay.client.post("/v1/jobs", json=job)).status_code == 201
        await callback(relay, "j", "running")
        await callback(relay, "j", "failed")
        (first,) = await early.received_at_least(1)
        assert first.verify(SIGNING_SECRET)["type"] == "job.failed"
        job["subscribers"] = [late.url]
        assert (await relay.client.post("/v1/jobs", json=job)).status_code == 200
        (second,) = await late.received_at_least(1)
        assert second.verify(SIGNING_SECRET) == first.verify(SIGNING_SECRET)
        assert second.webhook_id == first.webhook_id
        await relay.client.post("/v1/jobs", json=job)  # the same subscriber again: nothing new
        assert len(await deliveries(relay)) == 2


async def test_retries_follow_the_schedule_and_keep_the_webhook_id(settings_with: SettingsWith) -> None:
    """500, a hang past the timeout, 429 with Retry-After, then 200: each retry when due, same webhook-id."""
    clock = Clock()
    settings = settings_for(settings_with, delivery_timeout_s=0.3, retry_jitter=0.0)
    script = [Reply(500, b"boom"), HANG, Reply(429, b"slow down", {"retry-after": "120"})]
    async with subscriber(script) as sub, open_relay(settings, clock, background=False) as relay:
        subscription = await subscribe(relay, sub.url)
        await callback(relay, "j", clock=clock)
        assert await deliver(relay, clock.now) == 1  # first attempt: 500
        assert await deliver(relay, clock.advance(4.5)) == 0  # the retry is due 5 s after the failure
        assert await deliver(relay, clock.advance(1)) == 1  # second attempt: hangs past the timeout
        assert await deliver(relay, clock.advance(295)) == 0  # then 5 min
        assert await deliver(relay, clock.advance(10)) == 1  # third: 429, Retry-After 120 (not 30 min)
        assert await deliver(relay, clock.advance(119)) == 0
        assert await deliver(relay, clock.advance(2)) == 1  # fourth: 200
        assert len({r.webhook_id for r in sub.received}) == 1 and len(sub.received) == 4
        assert len({orjson.dumps(r.verify(subscription["secret"])) for r in sub.received}) == 1
        (listed,) = await deliveries(relay)
        assert listed["status"] == "delivered" and listed["attempt_count"] == 4
        codes = [(a["status_code"], a["response"]) for a in listed["attempts"]]
        assert codes == [(500, "boom"), (None, ""), (429, "slow down"), (200, "ok")]
        assert "no answer within 0.3 s" in listed["attempts"][1]["error"]


async def test_410_disables_the_subscription(settings_with: SettingsWith) -> None:
    """410 Gone: the delivery is dead, the subscription disabled, and no later event goes to it."""
    clock = Clock()
    settings = settings_for(settings_with)
    async with subscriber(then=Reply(410)) as sub, open_relay(settings, clock, background=False) as relay:
        subscription = await subscribe(relay, sub.url)
        await callback(relay, "j1", clock=clock)
        await deliver(relay, clock.now)
        (listed,) = (await relay.client.get("/v1/subscriptions")).json()["subscriptions"]
        assert (listed["id"], listed["disabled"], listed["disabled_reason"]) == (
            subscription["id"],
            True,
            "410 Gone",
        )
        await callback(relay, "j2", clock=clock)
        assert await deliver(relay, clock.advance(3600)) == 0
        assert [d["status"] for d in await deliveries(relay)] == ["dead"]
        retry = await relay.client.post(f"/v1/deliveries/{(await deliveries(relay))[0]['id']}/retry")
        assert retry.status_code == 409 and retry.json()["error"]["code"] == "subscription_inactive"
        assert len(sub.received) == 1


async def test_fast_connection_refusal_gets_one_quick_retry(settings_with: SettingsWith) -> None:
    """A refused connection is retried at once, once; the next failure waits for the schedule."""
    clock = Clock()
    settings = settings_for(settings_with, retry_jitter=0.0)
    async with open_relay(settings, clock, background=False) as relay:
        await subscribe(relay, f"http://127.0.0.1:{free_port()}/hook")  # nothing listens there
        await callback(relay, "j", clock=clock)
        assert await deliver(relay, clock.now) == 1
        (listed,) = await deliveries(relay)
        assert listed["status"] == "retrying" and "connection failed" in listed["last_error"]
        # Due when the refusal came: the attempt's real latency (under 1 s, or no quick retry) is added.
        assert await deliver(relay, clock.now + 1) == 1
        assert await deliver(relay, clock.now + 5) == 0  # the second failure waits 5 s from then
        assert await deliver(relay, clock.now + 8) == 1
        assert (await deliveries(relay))[0]["attempt_count"] == 3


async def test_a_spent_schedule_is_dead_and_can_be_retried(settings_with: SettingsWith) -> None:
    """After the last retry the delivery is dead; POST retry sends it again with the same webhook-id."""
    clock = Clock()
    settings = settings_for(settings_with, retry_schedule_s=[1, 2], retry_jitter=0.0)
    async with subscriber(then=Reply(500)) as sub, open_relay(settings, clock, background=False) as relay:
        await subscribe(relay, sub.url)
        await callback(relay, "j", clock=clock)
        for step in (0, 1.1, 2.1):
            assert await deliver(relay, clock.advance(step)) == 1
        (dead,) = await deliveries(relay, status="dead")
        assert await deliver(relay, clock.advance(3600)) == 0
        sub.then = Reply(200)
        retried = await relay.client.post(f"/v1/deliveries/{dead['id']}/retry")
        assert retried.status_code == 202 and retried.json()["status"] == "pending"
        assert await deliver(relay, clock.now) == 1
        assert [d["status"] for d in await deliveries(relay)] == ["delivered"]
        assert len(sub.received) == 4 and len(set(sub.ids())) == 1


async def test_a_late_result_is_delivered_after_the_time_out_across_retries(
    settings_with: SettingsWith,
) -> None:
    """job.timed_out fails once; the late job.succeeded waits for it, then follows it."""
    clock = Clock()
    settings = settings_for(settings_with, retry_jitter=0.0)
    async with subscriber([Reply(500)]) as sub, open_relay(settings, clock, background=False) as relay:
        await subscribe(relay, sub.url)
        await relay.client.post("/v1/jobs", json={"source": "demo", "job_id": "j", "timeout_s": 10})
        await relay.services.loop(Sweeper).run_once(clock.advance(11))
        assert await deliver(relay, clock.now) == 1  # job.timed_out: 500
        await callback(relay, "j", clock=clock)  # the late result
        assert await deliver(relay, clock.advance(1)) == 0  # waits behind the time-out's retry
        assert await deliver(relay, clock.advance(5)) == 1  # the time-out again: 200
        assert await deliver(relay, clock.now) == 1  # now the late result
        types = [orjson.loads(r.body)["type"] for r in sub.received]
        assert types == ["job.timed_out", "job.timed_out", "job.succeeded"]
        assert orjson.loads(sub.received[-1].body)["data"]["late"] is True


async def test_a_black_hole_does_not_delay_a_healthy_subscriber(settings_with: SettingsWith) -> None:
    """With one endpoint that never answers, a healthy one still gets every result at once."""
    settings = settings_for(
        settings_with, delivery_timeout_s=5.0, delivery_concurrency=4, endpoint_concurrency=2
    )
    async with open_relay(settings) as relay, subscriber(then=HANG) as hole, subscriber() as healthy:
        await subscribe(relay, hole.url)
        await subscribe(relay, healthy.url)
        for i in range(20):
            await callback(relay, f"j{i}")
        await healthy.received_at_least(20, within=2.0)  # well inside the black hole's 5 s timeout
        await wait_for(lambda: relay.services.loop(Deliverer).in_flight == 2)
        assert len(hole.received) == 2  # it holds its two slots and no more


async def test_a_round_claims_a_ready_batch_that_starts_as_slots_free(settings_with: SettingsWith) -> None:
    """A round holds more than an endpoint can take at once: its room in flight, the rest ready to go."""
    clock = Clock()
    settings = settings_for(settings_with, delivery_timeout_s=5.0, endpoint_concurrency=2)
    async with (
        subscriber(then=Reply(delay=0.2)) as slow,
        open_relay(settings, clock, background=False) as relay,
    ):
        await subscribe(relay, slow.url)
        for i in range(6):
            await callback(relay, f"j{i}", clock=clock)
        deliverer = relay.services.loop(Deliverer)
        assert await deliverer.run_once(clock.now) == 6  # 2 in flight, 4 ready
        await slow.received_at_least(2)
        assert deliverer.in_flight == 2
        # The ready four go out two at a time as answers come, with no round in between.
        await slow.received_at_least(6, within=5)
        await deliverer.drain()
        assert [d["status"] for d in await deliveries(relay)] == ["delivered"] * 6


async def test_a_ready_claim_that_waited_past_a_timeout_is_let_go(settings_with: SettingsWith) -> None:
    """A ready claim whose endpoint held its slot for a whole timeout is not sent late under its lease: it is
    let go, and claimed again once that lease lapses."""
    clock = Clock()
    settings = settings_for(settings_with, delivery_timeout_s=0.3, endpoint_concurrency=1, retry_jitter=0.0)
    async with subscriber(then=HANG) as hole, open_relay(settings, clock, background=False) as relay:
        await subscribe(relay, hole.url)
        for i in range(3):
            await callback(relay, f"j{i}", clock=clock)
        deliverer = relay.services.loop(Deliverer)
        assert await deliverer.run_once(clock.now) == 3  # 1 in flight, 2 ready
        await deliverer.drain()  # the first times out; the two ready ones waited as long: let go
        assert len(hole.received) == 1
        hole.then = Reply(200)
        assert await deliver(relay, clock.now + 1) == 0  # still under their lease
        assert await deliver(relay, clock.now + deliverer.lease_s + 1) == 3  # lapsed, and the retry is due
        assert len(hole.received) == 4
        assert sorted(d["status"] for d in await deliveries(relay)) == ["delivered"] * 3


async def test_the_circuit_breaker_pauses_a_failing_endpoint_and_probes_it(
    settings_with: SettingsWith,
) -> None:
    """After circuit_failures in a row the endpoint is paused; one probe later; success resumes it."""
    clock = Clock()
    settings = settings_for(
        settings_with, circuit_failures=3, circuit_open_s=60.0, retry_schedule_s=[1.0] * 10, retry_jitter=0.0
    )
    async with (
        subscriber(then=Reply(503)) as failing,
        subscriber() as healthy,
        open_relay(settings, clock, background=False) as relay,
    ):
        await subscribe(relay, failing.url)
        await subscribe(relay, healthy.url)
        for i in range(4):
            await callback(relay, f"j{i}", clock=clock)
        assert await deliver(relay, clock.now) == 8
        deliverer = relay.services.loop(Deliverer)
        endpoint = f"http://127.0.0.1:{failing.port}"
        assert deliverer.breakers.is_open(endpoint, clock.now + 1)
        await callback(relay, "j4", clock=clock)
        assert await deliver(relay, clock.advance(2)) == 1  # only the healthy endpoint's new delivery
        assert len(failing.received) == 4 and len(healthy.received) == 5
        assert await deliver(relay, clock.advance(59)) == 1  # one probe: still failing, paused again
        assert await deliver(relay, clock.advance(60)) == 0  # the pause doubled
        failing.then = Reply(200)
        assert await deliver(relay, clock.advance(61)) == 1  # the probe succeeds: closed
        while await deliver(relay, clock.now):
            pass
        assert sorted(set(failing.ids())) == sorted(set(healthy.ids()))
        assert not deliverer.breakers.is_open(endpoint, clock.now)


async def test_slow_and_long_answers(settings_with: SettingsWith) -> None:
    """A 2xx whose body dribbles past the timeout counts; only the first bytes of an answer are kept."""
    clock = Clock()
    settings = settings_for(settings_with, delivery_timeout_s=0.3)
    script = [Reply(200, b"x" * 100, body_delay=2.0), Reply(200, b"y" * 5000)]
    async with subscriber(script) as sub, open_relay(settings, clock, background=False) as relay:
        await subscribe(relay, sub.url)
        await callback(relay, "slow", clock=clock)
        await callback(relay, "long", clock=clock)
        await deliver(relay, clock.now)
        by_job = {d["job_id"]: d for d in await deliveries(relay)}
        assert {d["status"] for d in by_job.values()} == {"delivered"}
        slow = by_job["slow"]["attempts"][0]
        assert slow["error"] == "the body was cut off by the timeout" and slow["response"].startswith("x")
        assert by_job["long"]["attempts"][0]["response"] == "y" * RESPONSE_HEAD_BYTES
        assert len(sub.received) == 2


async def test_the_dial_time_guard_refuses_a_private_address(settings_with: SettingsWith) -> None:
    """A subscriber that reaches the store with a loopback URL (e.g. DNS rebinding) is still not called."""
    clock = Clock()
    settings = settings_with()  # allow_private_destinations = false
    async with subscriber() as sub, open_relay(settings, clock, background=False) as relay:
        await relay.services.store.create_subscription(sub.url, None, None, SIGNING_SECRET, clock.now)
        await callback(relay, "j", clock=clock)
        assert await deliver(relay, clock.now) == 1
        (listed,) = await deliveries(relay)
        assert listed["status"] == "retrying"
        assert "destination refused" in listed["last_error"] and "loopback" in listed["last_error"]
        assert sub.connections == 0


async def test_deliveries_api_filters_pages_and_refuses_bad_input(settings_with: SettingsWith) -> None:
    """Status/job filters, cursor pages, one delivery by id, 404s and 400s."""
    async with subscriber() as sub, open_relay(settings_for(settings_with)) as relay:
        await subscribe(relay, sub.url)
        for i in range(3):
            await callback(relay, f"j{i}")
        await wait_for(lambda: _delivered(relay, 3))
        assert [d["job_id"] for d in await deliveries(relay, job_id="j1")] == ["j1"]
        first = (await relay.client.get("/v1/deliveries", params={"limit": 2})).json()
        rest = (await relay.client.get("/v1/deliveries", params={"cursor": first["next_cursor"]})).json()
        assert [d["job_id"] for d in first["deliveries"] + rest["deliveries"]] == ["j2", "j1", "j0"]
        assert rest["next_cursor"] is None
        one = await relay.client.get(f"/v1/deliveries/{first['deliveries'][0]['id']}")
        assert one.json() == first["deliveries"][0]
        for path in ("/v1/deliveries/dlv_999", "/v1/deliveries/bogus", "/v1/deliveries/dlv_999/retry"):
            method = "POST" if path.endswith("retry") else "GET"
            assert (await relay.client.request(method, path)).status_code == 404, path
        for params in ({"status": "lost"}, {"limit": "0"}, {"cursor": "x"}):
            assert (await relay.client.get("/v1/deliveries", params=params)).status_code == 400, params
        assert {DeliveryStatus(d["status"]) for d in await deliveries(relay)} == {DeliveryStatus.DELIVERED}


async def test_cli_lists_and_retries_deliveries(settings_with: SettingsWith) -> None:
    """`relay deliveries list` and `relay deliveries retry ID` ask the running relay."""
    async with subscriber() as sub, start_relay(settings_for(settings_with)) as relay:
        await subscribe(relay, sub.url)
        await callback(relay, "j")
        await wait_for(lambda: _delivered(relay, 1))
        api = ["--url", relay.base_url, "--api-key", relay.client.headers["authorization"].split()[1]]
        runner = CliRunner()
        listed = await asyncio.to_thread(
            runner.invoke, cli, ["deliveries", "list", *api, "--status", "delivered"]
        )
        assert listed.exit_code == 0, listed.output
        delivery_id = listed.output.split("\t")[0]
        assert delivery_id.startswith("dlv_") and "demo/j" in listed.output and "last=200" in listed.output
        retried = await asyncio.to_thread(runner.invoke, cli, ["deliveries", "retry", *api, delivery_id])
        assert retried.exit_code == 0 and "pending" in retried.output
        await sub.received_at_least(2)
        assert len(set(sub.ids())) == 1
        missing = await asyncio.to_thread(runner.invoke, cli, ["deliveries", "retry", *api, "dlv_424242"])
        assert missing.exit_code != 0 and "404" in missing.output


@pytest.mark.parametrize("events", [None, ["job.running", "job.succeeded"]])
async def test_running_events_only_when_named(settings_with: SettingsWith, events: list[str] | None) -> None:
    """job.running reaches only subscriptions that name it."""
    async with subscriber() as sub, open_relay(settings_for(settings_with)) as relay:
        await subscribe(relay, sub.url, **({} if events is None else {"events": events}))
        await callback(relay, "j", "running")
        await callback(relay, "j", "succeeded")
        await wait_for(lambda: _delivered(relay, 2 if events else 1))
        expected = ["job.running", "job.succeeded"] if events else ["job.succeeded"]
        assert [orjson.loads(r.body)["type"] for r in sub.received] == expected
