"""The wait and retry rules on their own, with a clock the test moves: a poll answered early backs off,
failures back off up to a cap and give up after `max_outage_s`, and the timeout says what it saw last."""

from __future__ import annotations

import json

import httpx
import pytest

from relay.client import Job, RelayConnectionError, Unavailable, WaitTimeout
from relay.client.retrying import MAX_DELAY_S
from relay.client.waiting import WaitPlan
from tests.conftest import Clock

STOPPING = (503, b'{"error": {"code": "shutting_down", "message": "stopping"}}')


def job_body(status: str) -> bytes:
    at = "2026-12-01T10:43:48.945Z"
    return json.dumps(
        {"source": "demo", "job_id": "j", "status": status, "result": None, "error": None, "late": False,
         "metadata": {}, "created_at": at, "updated_at": at, "finished_at": None, "deadline": None}
    ).encode()  # fmt: skip


def pause(outcome: Job | float) -> float:
    """The pause a plan answered (not a job)."""
    assert isinstance(outcome, float)
    return outcome


def plan(clock: Clock, timeout: float | None = 100.0, max_outage_s: float = 30.0) -> WaitPlan:
    return WaitPlan(
        "demo",
        "j",
        timeout,
        poll_s=10.0,
        max_outage_s=max_outage_s,
        client_timeout=5.0,
        base_url="x",
        clock=clock,
    )


def test_a_poll_that_runs_its_course_is_followed_at_once_and_an_early_one_backs_off() -> None:
    """Not final after the whole wait: ask again now. Answered early (a stopping relay): once at once, then
    with growing pauses; a full wait resets that."""
    clock = Clock(0.0)
    waiting = plan(clock)
    waiting.next_call()
    clock.advance(10.0)
    assert waiting.on_answer(200, job_body("running")) == 0.0
    pauses = []
    for _ in range(4):
        waiting.next_call()
        pauses.append(pause(waiting.on_answer(200, job_body("running"))))
    assert pauses[0] == 0.0 and 0 < pauses[1] < pauses[3]
    waiting.next_call()
    clock.advance(10.0)
    assert waiting.on_answer(200, job_body("running")) == 0.0


def test_failures_back_off_to_a_cap_and_give_up_after_the_outage_bound() -> None:
    """503 shutting_down and refused connections: at once, then longer pauses (never over the cap); once relay
    has not answered for max_outage_s the last failure is raised."""
    clock = Clock(0.0)
    waiting = plan(clock, timeout=None, max_outage_s=30.0)
    pauses: list[float] = []
    while clock.now <= 30.0:
        waiting.next_call()
        if len(pauses) % 2:
            pauses.append(pause(waiting.on_answer(*STOPPING)))
        else:
            pauses.append(waiting.on_transport_error(httpx.ConnectError("refused")))
        clock.advance(max(pauses[-1], 0.5))
    assert pauses[0] == 0.0 and max(pauses) <= MAX_DELAY_S and pauses[-1] > MAX_DELAY_S / 2
    with pytest.raises((Unavailable, RelayConnectionError)):
        waiting.next_call()
        waiting.on_answer(*STOPPING)


def test_the_final_job_ends_the_wait_and_the_timeout_reports_what_was_seen() -> None:
    """A final answer is returned; at the timeout, WaitTimeout with the job last seen, or the failure when
    relay was not answering."""
    clock = Clock(0.0)
    waiting = plan(clock, timeout=5.0)
    call = waiting.next_call()
    assert call.params == {"wait": "5.000"}  # never longer than the time left
    done = waiting.on_answer(200, job_body("succeeded"))
    assert not isinstance(done, float) and done.status == "succeeded"

    waiting = plan(clock, timeout=5.0)
    waiting.next_call()
    clock.advance(5.0)
    assert waiting.on_answer(200, job_body("running")) == 0.0
    with pytest.raises(WaitTimeout) as timed_out:
        waiting.next_call()
    assert timed_out.value.job is not None and timed_out.value.job.status == "running"

    waiting = plan(clock, timeout=5.0)
    waiting.next_call()
    assert waiting.on_answer(*STOPPING) == 0.0
    clock.advance(5.0)
    with pytest.raises(Unavailable):
        waiting.next_call()
