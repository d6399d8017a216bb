"""/metrics' gauges read from the database (the delivery backlog by subscription, overdue jobs), the loops'
last clean rounds, `metrics_require_key`, and a scrape while the database is away. The exposition is read
with prometheus_client's own parser."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from relay.database_metrics import PER_JOB
from relay.delivery import Deliverer
from relay.sweeper import Sweeper
from tests.conftest import Clock, Relay, free_port, make_settings, open_relay, wait_for
from tests.integration.conftest import SettingsWith
from tests.integration.test_deliveries import SIGNING_SECRET, callback, deliver, settings_for, subscribe
from tests.integration.test_logs import captured
from tests.postgres import outage
from tests.subscriber import HANG, Reply, subscriber

Samples = dict[str, dict[tuple[tuple[str, str], ...], float]]
BACKLOG = ("relay_deliveries_due", "relay_deliveries_in_flight", "relay_deliveries_dead")
OLDEST_DUE = "relay_deliveries_oldest_due_age_seconds"


def parse(text: str) -> Samples:
    """Every sample of the exposition: name -> sorted labels -> value."""
    samples: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples.setdefault(sample.name, {})[tuple(sorted(sample.labels.items()))] = sample.value
    return samples


async def scrape(client: httpx.AsyncClient) -> Samples:
    response = await client.get("/metrics")
    assert response.status_code == 200, response.text
    return parse(response.text)


def by_subscription(samples: Samples, name: str) -> dict[str, float]:
    return {dict(labels)["subscription"]: value for labels, value in samples.get(name, {}).items()}


def single(samples: Samples, name: str) -> float:
    (value,) = samples[name].values()
    return value


def backlog(samples: Samples) -> dict[str, dict[str, float]]:
    """Each backlog gauge by subscription label."""
    return {name: by_subscription(samples, name) for name in BACKLOG}


async def test_the_backlog_by_subscription_and_the_oldest_due_delivery(settings_with: SettingsWith) -> None:
    """A dead delivery, one in flight and due ones, each counted under its subscription; jobs' own subscribers
    under `_per_job`; the oldest due delivery's age on the relay's clock; an expired claim is due again."""
    clock = Clock()
    settings = settings_for(settings_with, signing_secret=SIGNING_SECRET, delivery_timeout_s=0.2)
    async with (
        subscriber(then=Reply(410)) as gone,
        subscriber(then=HANG) as hanging,
        open_relay(settings, clock, background=False) as relay,
    ):
        empty = await scrape(relay.client)
        assert backlog(empty) == {name: {PER_JOB: 0.0} for name in BACKLOG}
        assert single(empty, OLDEST_DUE) == 0.0
        assert single(empty, "relay_database_up") == 1.0
        # 410: dead at once, and the subscription disabled (it is still reported).
        dead_sub = (await subscribe(relay, gone.url))["id"]
        await callback(relay, "j1", clock=clock)
        assert await deliver(relay, clock.now) == 1
        # Claimed by a round whose attempt hangs: in flight until its lease ends.
        slow_sub = (await subscribe(relay, hanging.url))["id"]
        await callback(relay, "j2", clock=clock)
        deliverer = relay.services.loop(Deliverer)
        claimed_at = clock.now
        assert await deliverer.run_once(claimed_at) == 1
        # Due: queued after the last round, to the subscription and to the job's own subscriber.
        queued_at = clock.advance(5)
        job = {"source": "demo", "job_id": "j3", "subscribers": [f"http://127.0.0.1:{free_port()}/hook"]}
        assert (await relay.client.post("/v1/jobs", json=job)).status_code == 201
        await callback(relay, "j3", clock=clock)
        clock.advance(7)
        samples = await scrape(relay.client)
        assert backlog(samples) == {
            "relay_deliveries_due": {dead_sub: 0.0, slow_sub: 1.0, PER_JOB: 1.0},
            "relay_deliveries_in_flight": {dead_sub: 0.0, slow_sub: 1.0, PER_JOB: 0.0},
            "relay_deliveries_dead": {dead_sub: 1.0, slow_sub: 0.0, PER_JOB: 0.0},
        }
        assert single(samples, OLDEST_DUE) == pytest.approx(clock.now - queued_at)
        # The hanging attempt's claim lapses (its process gone, say): the delivery is due again, since then.
        lease_end = clock.advance(claimed_at + deliverer.lease_s - clock.now)
        samples = await scrape(relay.client)
        assert by_subscription(samples, "relay_deliveries_due")[slow_sub] == 2.0
        assert by_subscription(samples, "relay_deliveries_in_flight")[slow_sub] == 0.0
        assert single(samples, OLDEST_DUE) == pytest.approx(lease_end - queued_at)
        await deliverer.drain()  # the hanging attempt times out and is recorded


async def test_open_jobs_past_their_deadline(settings_with: SettingsWith) -> None:
    """Open jobs whose deadline passed are counted until the sweeper ends them; others never are."""
    clock = Clock()
    async with open_relay(settings_with(), clock, background=False) as relay:
        for job_id, timeout_s in (("late1", 10), ("late2", 10), ("patient", 3600), ("done", 10)):
            job = {"source": "demo", "job_id": job_id, "timeout_s": timeout_s}
            assert (await relay.client.post("/v1/jobs", json=job)).status_code == 201
        await callback(relay, "done", clock=clock)
        assert single(await scrape(relay.client), "relay_jobs_overdue") == 0.0
        clock.advance(11)
        assert single(await scrape(relay.client), "relay_jobs_overdue") == 2.0
        await relay.services.loop(Sweeper).run_once(clock.now)
        assert single(await scrape(relay.client), "relay_jobs_overdue") == 0.0


async def test_the_loops_last_clean_round_moves_with_each_round(settings_with: SettingsWith) -> None:
    """The deliverer's and the sweeper's last clean round, on the relay's clock, move when a round runs."""
    clock = Clock()
    async with open_relay(settings_with(), clock) as relay:

        async def last_rounds() -> dict[str, float]:
            samples = await scrape(relay.client)
            rounds = samples.get("relay_loop_last_success_timestamp_seconds", {})
            return {dict(labels)["loop"]: value for labels, value in rounds.items()}

        async def rounds_at(when: float) -> bool:
            rounds = await last_rounds()
            return rounds.get("deliverer") == when and rounds.get("sweeper") == when

        await wait_for(lambda: rounds_at(clock.now))  # each loop's first round, at start
        later = clock.advance(100)
        assert (await last_rounds())["sweeper"] < later  # nothing moves it but a round
        for loop in relay.services.loops:
            loop.wake()
        await wait_for(lambda: rounds_at(later))


async def test_metrics_require_key(settings_with: SettingsWith, relay: Relay) -> None:
    """With `metrics_require_key` /metrics is a key route (401 in the API's error shape); without, open."""
    async with relay.anonymous() as anonymous:
        assert (await anonymous.get("/metrics")).status_code == 200
    async with open_relay(settings_with(metrics_require_key=True)) as guarded:
        async with guarded.anonymous() as anonymous:
            missing = await anonymous.get("/metrics")
            wrong = await anonymous.get("/metrics", headers={"authorization": "Bearer nope"})
        assert (missing.status_code, missing.json()["error"]["code"]) == (401, "missing_api_key")
        assert (wrong.status_code, wrong.json()["error"]["code"]) == (401, "bad_api_key")
        assert "relay_deliveries_due" in await scrape(guarded.client)


@pytest.mark.postgres
async def test_a_scrape_answers_while_the_database_is_away(tmp_path: Path, postgres_database: str) -> None:
    """The database gone: 200 with what this process knows, `relay_database_up 0`, no database gauge (no stale
    count), a log line; back: the gauges are read again."""
    settings = make_settings(tmp_path, database=postgres_database)
    async with open_relay(settings, background=False) as relay:
        assert (await relay.post_callback("demo", b'{"id": "j", "status": "succeeded"}')).status_code == 200
        before = await scrape(relay.client)
        assert single(before, "relay_database_up") == 1.0 and "relay_jobs" in before
        with captured(level=logging.WARNING) as lines:
            async with outage(postgres_database):
                during = await asyncio.wait_for(scrape(relay.client), 10)
        assert single(during, "relay_database_up") == 0.0
        assert during["relay_callbacks_total"] == before["relay_callbacks_total"]
        assert not {"relay_jobs", "relay_jobs_overdue", *BACKLOG} & during.keys()
        assert lines.events("metrics.database_unavailable")
        await wait_for(lambda: _reads_again(relay))


async def _reads_again(relay: Relay) -> bool:
    samples = await scrape(relay.client)
    succeeded = samples.get("relay_jobs", {}).get((("status", "succeeded"),))
    return single(samples, "relay_database_up") == 1.0 and succeeded == 1
