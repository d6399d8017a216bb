"""A background loop that dies or keeps failing is restarted, logged, and named by /healthz until well."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

import httpx
import pytest

from relay.logs import fields_of
from relay.loops import FAILING_ROUNDS
from relay.sweeper import Sweeper
from tests.conftest import Relay, open_relay, wait_for
from tests.integration.conftest import SettingsWith


@pytest.fixture
async def fast_sweeper_relay(settings_with: SettingsWith) -> AsyncIterator[Relay]:
    """A relay whose sweeper runs a round every 20 ms."""
    async with open_relay(settings_with(sweep_interval_s=0.02)) as opened:
        yield opened


async def loop_failing(relay: Relay) -> httpx.Response | None:
    """/healthz's answer when it is a 503 loop_failing, else None."""
    answer = await relay.client.get("/healthz")
    if answer.status_code == 503 and answer.json()["error"]["code"] == "loop_failing":
        return answer
    return None


async def test_a_loop_that_dies_outside_its_round_is_restarted_and_reported(
    fast_sweeper_relay: Relay, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A sweeper whose `run` raises outside `run_once` is logged with its traceback and restarted, /healthz
    is 503 loop_failing naming it while it keeps dying, and 200 again after its first clean round."""
    relay = fast_sweeper_relay
    sweeper = relay.services.loop(Sweeper)
    await wait_for(relay.healthy)
    broken = True

    def go_again(done: int) -> bool:
        if broken:
            raise ValueError("injected: the loop's own code failed")
        return Sweeper.go_again(sweeper, done)

    monkeypatch.setattr(sweeper, "go_again", go_again)
    with caplog.at_level(logging.WARNING, logger="relay.loops"):
        await wait_for(lambda: sweeper.crashes >= 2)  # it died, was restarted, and died again
        answer = await loop_failing(relay)
        assert answer is not None
        assert "sweeper" in answer.json()["error"]["message"]
        assert "injected" in answer.json()["error"]["message"]
    sweeper_lines = [r for r in caplog.records if fields_of(r).get("loop") == "sweeper"]
    deaths = [r for r in sweeper_lines if r.getMessage() == "loop.died"]
    assert len(deaths) >= 2 and all(r.exc_info is not None for r in deaths)
    assert any(r.getMessage() == "loop.restarting" for r in sweeper_lines)

    broken = False
    await wait_for(relay.healthy)
    assert sweeper.crashes == 0


async def test_a_loop_failing_round_after_round_is_reported_until_a_clean_round(
    fast_sweeper_relay: Relay, monkeypatch: pytest.MonkeyPatch
) -> None:
    """FAILING_ROUNDS failed rounds in a row make /healthz 503 loop_failing; one clean round ends it."""
    relay = fast_sweeper_relay
    sweeper = relay.services.loop(Sweeper)
    await wait_for(relay.healthy)
    working = sweeper.run_once
    broken = True

    async def run_once(now: float) -> int:
        if broken:
            raise RuntimeError("injected: the round failed")
        return await working(now)

    monkeypatch.setattr(sweeper, "run_once", run_once)
    await wait_for(lambda: sweeper.failures >= FAILING_ROUNDS)
    answer = await loop_failing(relay)
    assert answer is not None
    assert f"sweeper loop failed its last {sweeper.failures} rounds" in answer.json()["error"]["message"]
    broken = False
    sweeper.wake()  # skip the rest of the backoff
    await wait_for(relay.healthy)
    assert sweeper.failures == 0
