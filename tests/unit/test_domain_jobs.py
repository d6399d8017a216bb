"""What happens to a job, without a database: the state machine, deadlines, callbacks, registrations and
time-outs."""

from __future__ import annotations

from dataclasses import MISSING, fields, replace
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from relay.domain.jobs import (
    Transition,
    apply_callback,
    extended_deadline,
    merge_registration,
    new_job_from_callback,
    reconcile_at,
    time_out,
    time_out_entry,
    transition,
)
from relay.models import Callback, IngestOutcome, Job, Registration, Status

P, R, S, F, C, T = Status  # in the order of their definition
NONE = Transition(None)
T0 = 1_700_000_000.0
SOURCE_TIMEOUT_S = 600.0

# Every (current, incoming) pair: current None is a job first heard of by this callback.
TABLE: dict[tuple[Status | None, Status], Transition] = {
    **{(cur, inc): Transition(R) for cur in (None, P) for inc in (P, R)},
    **{(R, inc): NONE for inc in (P, R)},
    (P, P): NONE,  # a cancel request's entry for a job not heard of yet (relay/cancel.py)
    **{(cur, inc): Transition(inc) for cur in (None, P, R) for inc in (S, F, C, T)},
    **{(cur, inc): NONE for cur in (S, F, C) for inc in Status},
    **{(T, inc): NONE for inc in (P, R, T)},
    **{(T, inc): Transition(inc, late=True) for inc in (S, F, C)},
}


def callback(status: Status, result: Any = None, error: str | None = None, delivery: str = "d") -> Callback:
    return Callback("j", status, delivery, b"{}", result=result, error=error)


def registered(timeout_s: float | None = None, now: float = T0) -> Job:
    return merge_registration(None, Registration("demo", "j", timeout_s=timeout_s), now, SOURCE_TIMEOUT_S).job


def heard(status: Status, now: float = T0, **fields: Any) -> Job:
    return new_job_from_callback("demo", callback(status, **fields), now, SOURCE_TIMEOUT_S)


# --- the state machine ------------------------------------------------------------------------------------


@pytest.mark.parametrize(("current", "incoming"), [(cur, inc) for cur in [None, *Status] for inc in Status])
def test_transition_table(current: Status | None, incoming: Status) -> None:
    """`transition` answers the contract's outcome for each (current, incoming) pair; the table names every
    pair (a pair it lacks fails here)."""
    assert (current, incoming) in TABLE, "the expected table has no entry for this pair"
    assert transition(current, incoming) == TABLE[current, incoming]


def test_transition_changed_says_whether_a_status_is_set() -> None:
    """`Transition.changed` is true exactly when a new status is set."""
    assert Transition(S).changed
    assert not Transition(None).changed


@settings(max_examples=200, deadline=None)
@given(start=st.sampled_from([None, *Status]), incoming=st.lists(st.sampled_from(list(Status)), max_size=30))
def test_folding_statuses_is_monotonic(start: Status | None, incoming: list[Status]) -> None:
    """Final states never go back, are set once, and only a timed_out job takes one late override."""
    current = start
    late = False
    overrides = 0
    for status in incoming:
        was = current
        step = transition(current, status)
        if step.late:
            assert was == T and step.status in (S, F, C)
        if step.status is not None:
            assert step.status != was, "a transition that changes nothing must answer None"
            if was is not None and was.final:
                assert was == T and step.late, "only timed_out is overridden, and only as late"
                overrides += 1
            current = step.status
            late = late or step.late
        if was is not None and was.final:
            assert current is not None and current.final, "a final job never goes back"
        if step.status is None and was is not None:
            assert current == was
    assert overrides <= 1
    assert late == (overrides == 1)
    if late:
        assert current in (S, F, C)


# --- a job's first callback -------------------------------------------------------------------------------


def test_a_final_first_callback_makes_a_finished_job() -> None:
    """A job first heard of through a final callback is final at once, with its result and error."""
    job = heard(F, result={"x": 1}, error="oom")
    assert (job.status, job.result, job.error, job.late) == (F, {"x": 1}, "oom", False)
    assert (job.created_at, job.updated_at, job.finished_at) == (T0, T0, T0)
    assert (job.callbacks, job.deadline, job.timeout_s, job.row_id) == (1, T0 + SOURCE_TIMEOUT_S, None, 0)


@pytest.mark.parametrize("status", [P, R])
def test_a_non_final_first_callback_makes_a_running_job(status: Status) -> None:
    """Any non-final first word makes a running job, due a source timeout from now, with no result kept."""
    job = heard(status, result={"x": 1}, error="early")
    assert (job.status, job.result, job.error, job.finished_at) == (R, None, None, None)
    assert (job.callbacks, job.deadline) == (1, T0 + SOURCE_TIMEOUT_S)


# --- callbacks to a known job -----------------------------------------------------------------------------


def test_first_word_rearms_a_job_without_its_own_timeout() -> None:
    """A registered job without its own timeout is due a source timeout from its first word."""
    change = apply_callback(registered(), callback(R), T0 + 50, SOURCE_TIMEOUT_S)
    assert (change.job.status, change.job.deadline, change.job.updated_at) == (R, T0 + 650, T0 + 50)
    assert change.changed and not change.duplicate and change.job.callbacks == 1


def test_first_word_keeps_the_deadline_of_a_job_with_its_own_timeout() -> None:
    """A job registered with its own timeout stays due at created + timeout after its first word."""
    change = apply_callback(registered(timeout_s=30), callback(R), T0 + 20, SOURCE_TIMEOUT_S)
    assert (change.job.status, change.job.deadline) == (R, T0 + 30)


def test_a_repeated_running_word_only_counts() -> None:
    """`running` to a running job changes nothing but the callback count, and is no duplicate."""
    job = heard(R)
    change = apply_callback(job, callback(R), T0 + 5, SOURCE_TIMEOUT_S)
    assert change.job == replace(job, callbacks=2)
    assert not change.changed and not change.duplicate


def test_a_final_callback_sets_the_result_once() -> None:
    """A final callback to an open job sets its status, result, error and finish time."""
    change = apply_callback(heard(R), callback(F, result=[1], error="oom"), T0 + 9, SOURCE_TIMEOUT_S)
    job = change.job
    assert (job.status, job.result, job.error, job.late) == (F, [1], "oom", False)
    assert (job.updated_at, job.finished_at, job.callbacks, job.deadline) == (T0 + 9, T0 + 9, 2, T0 + 600)
    assert change.changed and not change.duplicate


@pytest.mark.parametrize("status", list(Status))
def test_anything_reaching_a_finished_job_is_a_duplicate(status: Status) -> None:
    """After succeeded, any callback leaves the job as it was (but counted) and is a duplicate."""
    job = heard(S, result="done")
    change = apply_callback(job, callback(status, result="other"), T0 + 9, SOURCE_TIMEOUT_S)
    assert change.job == replace(job, callbacks=2)
    assert change.duplicate and not change.changed


def test_a_final_result_after_timed_out_is_late_and_no_duplicate() -> None:
    """A final result reaching a timed-out job replaces it, marked late."""
    timed_out = time_out(heard(R), T0 + 600)
    assert timed_out is not None
    change = apply_callback(timed_out.job, callback(S, result="x"), T0 + 700, SOURCE_TIMEOUT_S)
    assert (change.job.status, change.job.late, change.job.result) == (S, True, "x")
    assert change.job.finished_at == T0 + 700
    assert change.changed and not change.duplicate


def test_outcome_reports_the_change_and_its_deliveries() -> None:
    """`JobChange.outcome` answers the job as it stands, whether it changed, and the deliveries queued."""
    change = apply_callback(heard(R), callback(S), T0 + 1, SOURCE_TIMEOUT_S)
    assert change.outcome(3) == IngestOutcome(change.job, duplicate=False, changed=True, queued=3)


# --- registrations ----------------------------------------------------------------------------------------


def test_registration_makes_a_pending_job_due_its_own_timeout() -> None:
    """A new registration makes a pending job with its metadata and subscribers, due created + timeout_s."""
    registration = Registration("demo", "j", timeout_s=30, subscribers=("https://a/",), metadata={"k": 1})
    change = merge_registration(None, registration, T0, SOURCE_TIMEOUT_S)
    job = change.job
    assert (job.status, job.callbacks, job.deadline, job.timeout_s) == (P, 0, T0 + 30, 30)
    assert (job.metadata, job.subscribers) == ({"k": 1}, ("https://a/",))
    assert change.new_subscribers == ("https://a/",)


def test_registration_without_a_timeout_is_due_the_source_timeout() -> None:
    """A job registered without timeout_s is due the source's timeout from its registration."""
    job = registered()
    assert (job.deadline, job.timeout_s) == (T0 + SOURCE_TIMEOUT_S, None)


def test_merging_adds_metadata_and_subscribers() -> None:
    """A registration merges into a known job: its metadata keys win, new subscribers are added in order."""
    first = Registration("demo", "j", subscribers=("https://a/", "https://b/"), metadata={"k": 1, "m": 2})
    job = merge_registration(None, first, T0, SOURCE_TIMEOUT_S).job
    again = Registration("demo", "j", subscribers=("https://b/", "https://c/"), metadata={"k": 9})
    change = merge_registration(job, again, T0 + 5, SOURCE_TIMEOUT_S)
    assert change.job.metadata == {"k": 9, "m": 2}
    assert change.job.subscribers == ("https://a/", "https://b/", "https://c/")
    assert change.new_subscribers == ("https://c/",)
    assert (change.job.created_at, change.job.updated_at, change.job.deadline) == (T0, T0 + 5, T0 + 600)


def test_a_timeout_registered_later_retimes_an_open_job_from_its_creation() -> None:
    """timeout_s given to a job a callback made sets its deadline to created + timeout_s."""
    change = merge_registration(heard(R), Registration("demo", "j", timeout_s=30), T0 + 100, SOURCE_TIMEOUT_S)
    assert (change.job.deadline, change.job.timeout_s) == (T0 + 30, 30)


def test_a_timeout_registered_to_a_finished_job_moves_no_deadline() -> None:
    """timeout_s given to a final job is kept as its own, but its deadline stays."""
    change = merge_registration(heard(S), Registration("demo", "j", timeout_s=30), T0 + 100, SOURCE_TIMEOUT_S)
    assert (change.job.deadline, change.job.timeout_s) == (T0 + SOURCE_TIMEOUT_S, 30)


def test_a_registration_without_a_timeout_keeps_the_job_s_own() -> None:
    """Registering again without timeout_s keeps the job's own timeout and its deadline."""
    change = merge_registration(registered(timeout_s=30), Registration("demo", "j"), T0 + 9, SOURCE_TIMEOUT_S)
    assert (change.job.deadline, change.job.timeout_s) == (T0 + 30, 30)


# --- the sweeper ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("now", [T0 + 600, T0 + 601])
def test_an_open_job_times_out_at_its_deadline(now: float) -> None:
    """An open job whose deadline is at or before now times out: final now, one history entry more."""
    change = time_out(heard(R), now)
    assert change is not None and change.changed and not change.duplicate
    job = change.job
    assert (job.status, job.updated_at, job.finished_at, job.callbacks, job.late) == (T, now, now, 2, False)


def test_a_time_out_keeps_every_other_field_of_the_job() -> None:
    """time_out builds the job field by field (for speed): every field it does not move is kept as it was,
    including any field added to Job later (the job below must set each one away from its default)."""
    job = Job(
        source="src",
        job_id="j",
        status=R,
        result={"r": 1},
        error="e",
        late=True,
        metadata={"m": 1},
        created_at=T0,
        updated_at=T0 + 1,
        finished_at=T0 + 2,
        deadline=T0 + 3,
        callbacks=4,
        row_id=5,
        subscribers=("https://a.example",),
        timeout_s=6.0,
        progress={"p": 7},
        files=("fil_8",),
    )
    defaults = {f.name: f.default for f in fields(Job) if f.default is not MISSING}
    assert all(getattr(job, name) != default for name, default in defaults.items())
    change = time_out(job, T0 + 9)
    assert change is not None
    assert change.job == replace(job, status=T, updated_at=T0 + 9, finished_at=T0 + 9, callbacks=5)


def test_no_time_out_for_a_job_not_due_finished_or_without_deadline() -> None:
    """time_out answers None for a job not yet due, one already final, or one with no deadline."""
    assert time_out(heard(R), T0 + 599) is None
    assert time_out(heard(S), T0 + 9999) is None
    assert time_out(replace(heard(R), deadline=None), T0 + 9999) is None


def test_a_time_out_entry_is_a_sweep_with_a_fresh_delivery_id() -> None:
    """Each time-out's history entry is a timed_out sweep with a delivery ID of its own."""
    first, second = time_out_entry(heard(R)), time_out_entry(heard(R))
    assert (first.job_id, first.status, first.via, first.body) == ("j", T, "sweep", b"{}")
    assert first.delivery_id.startswith("sweep_") and first.delivery_id != second.delivery_id


@pytest.mark.parametrize(
    ("now", "expected"),
    [(T0 + 101, T0 + 201), (T0 + 250, T0 + 300), (T0 + 300, None), (T0 + 301, None)],
)
def test_a_running_answer_extends_the_deadline_up_to_the_cap(now: float, expected: float | None) -> None:
    """Still running: due a source timeout from now, never past created + max_deadline_s; then no more."""
    assert extended_deadline(heard(R), now, timeout_s=100, max_deadline_s=300) == expected


def test_an_early_reconcile_is_armed_for_open_new_jobs_only() -> None:
    """A new job is asked about reconcile_after_s after creation, unless final or the source never asks."""
    assert reconcile_at(heard(R), 30) == T0 + 30
    assert reconcile_at(registered(), 30) == T0 + 30
    assert reconcile_at(heard(S), 30) is None
    assert reconcile_at(heard(R), None) is None


# --- properties -------------------------------------------------------------------------------------------

# One step of a job's life: a callback with this status, or the sweeper passing (None); then seconds later.
STEPS = st.lists(st.tuples(st.sampled_from([None, *Status]), st.floats(0, 1000)), max_size=30)
STARTS = st.sampled_from(["registered", "registered_with_timeout", *Status])


def _start(kind: Status | str) -> Job:
    if kind == "registered":
        return registered()
    if kind == "registered_with_timeout":
        return registered(timeout_s=300)
    assert isinstance(kind, Status)
    return heard(kind, result={"first": True})


def _final_parts(job: Job) -> tuple[Any, ...]:
    return (job.status, job.result, job.error, job.late, job.finished_at)


@settings(max_examples=300, deadline=None)
@given(start=STARTS, steps=STEPS)
def test_a_final_job_is_never_left_but_for_one_late_result(start: Status | str, steps: list[Any]) -> None:
    """Folding callbacks and sweeps: a final state and its result stay, except timed_out -> one late final."""
    job, now = _start(start), T0
    for i, (status, wait) in enumerate(steps):
        now += wait
        before = job
        if status is None:
            change = time_out(job, now)
            if change is None:
                continue
            assert not before.final and before.deadline is not None and before.deadline <= now
        else:
            answer = callback(status, result=i, delivery=str(i))
            change = apply_callback(job, answer, now, SOURCE_TIMEOUT_S)
            assert change.duplicate == (before.final and not change.changed)
        job = change.job
        assert job.callbacks == before.callbacks + 1
        if before.final and before.status != T:
            assert _final_parts(job) == _final_parts(before), "a final result is set once"
        if before.status == T and job.status != T:
            assert job.final and job.late and job.result == i, "only a late final result follows timed_out"
        if before.final:
            assert job.final


@settings(max_examples=300, deadline=None)
@given(steps=STEPS, metadata=st.dictionaries(st.text(max_size=3), st.integers(), max_size=3))
def test_callbacks_never_move_the_deadline_of_a_job_with_its_own_timeout(
    steps: list[Any], metadata: dict[str, int]
) -> None:
    """A job registered with its own timeout stays due at created + timeout_s, whatever is called back."""
    job, now = registered(timeout_s=300), T0
    for i, (status, wait) in enumerate(steps):
        now += wait
        if status is None:  # a registration again, without a timeout
            again = Registration("demo", "j", metadata=metadata)
            job = merge_registration(job, again, now, SOURCE_TIMEOUT_S).job
        else:
            job = apply_callback(job, callback(status, delivery=str(i)), now, SOURCE_TIMEOUT_S).job
        assert job.deadline == T0 + 300


@settings(max_examples=300, deadline=None)
@given(steps=STEPS)
def test_a_job_without_its_own_timeout_is_rearmed_once_at_its_first_word(steps: list[Any]) -> None:
    """A job registered without timeout_s moves its deadline once: a source timeout on from its first word."""
    job, now = registered(), T0
    for i, (status, wait) in enumerate(steps):
        if status is None:
            continue
        now += wait
        before = job
        job = apply_callback(job, callback(status, delivery=str(i)), now, SOURCE_TIMEOUT_S).job
        if before.status == P and job.status == R:
            assert job.deadline == now + SOURCE_TIMEOUT_S
        else:
            assert job.deadline == before.deadline
