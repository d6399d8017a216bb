"""What happens to a job: its state machine, its deadlines, and what a callback, a registration or the
sweeper makes of it. Each function answers the job as it will stand; the backend writes it."""

from __future__ import annotations

import random
from dataclasses import replace

from relay.domain.progress import PROGRESS_EVENT_TYPE, new_progress, progress_of
from relay.models import Callback, Event, IngestOutcome, Job, Registration, Status, record

__all__ = [
    "JobChange",
    "RegistrationChange",
    "Transition",
    "apply_callback",
    "extended_deadline",
    "merge_registration",
    "new_event_id",
    "new_job_from_callback",
    "reconcile_at",
    "time_out",
    "time_out_entry",
    "transition",
]


@record
class Transition:
    """What a callback does to a job: the new status (None: unchanged) and whether it arrived late."""

    status: Status | None
    late: bool = False

    @property
    def changed(self) -> bool:
        return self.status is not None


# Transitions are values: one of each, shared, so that applying a callback allocates none.
_UNCHANGED = Transition(None)
_TO = {status: Transition(status) for status in Status}
_LATE = {status: Transition(status, late=True) for status in Status if status.final}


def transition(current: Status | None, incoming: Status) -> Transition:
    """Apply a callback's status to a job's: final states are set once, never moved back.

    A final status after `timed_out` is taken as late; everything else reaching a final job is a no-op.
    """
    if current is None or current in (Status.PENDING, Status.RUNNING):
        if incoming.final:
            return _TO[incoming]
        # Non-final words (queued, starting, processing...) all mean "we heard from the provider"; `pending`
        # itself (a cancel request's entry for a job not heard of yet, relay/cancel.py) changes nothing.
        return _TO[Status.RUNNING] if current not in (Status.RUNNING, incoming) else _UNCHANGED
    if current == Status.TIMED_OUT and incoming.final and incoming != Status.TIMED_OUT:
        return _LATE[incoming]
    return _UNCHANGED


def new_event_id(now: float) -> str:
    """`evt_` + 48 bits of milliseconds + 80 random bits (32 hex digits, as a uuid's): unique, and in time
    order, so that new ids land at the end of whatever orders by them."""
    # Uniqueness is all an event id needs (it is no secret), so no system call for the random part.
    return f"evt_{int(now * 1000) & 0xFFFFFFFFFFFF:012x}{random.getrandbits(80):020x}"


@record
class JobChange:
    """What a callback or a time-out does to a known job."""

    job: Job  # the job as it will stand once written
    step: Transition
    duplicate: bool  # it changed nothing because the job was already final (API.md's `duplicate`)
    progressed: bool = False  # a running job took a new non-final payload (a `job.progress` event)

    @property
    def changed(self) -> bool:
        return self.step.changed or self.progressed

    @property
    def event_type(self) -> str | None:
        """The event the change makes: its new status's, else `job.progress`; None when it makes none."""
        if self.step.changed:
            return Event.type_for(self.job.status)
        return PROGRESS_EVENT_TYPE if self.progressed else None

    def outcome(self, queued: int) -> IngestOutcome:
        """The answer once the change is stored, with the deliveries it queued."""
        return IngestOutcome(self.job, duplicate=self.duplicate, changed=self.changed, queued=queued)


def new_job_from_callback(source: str, callback: Callback, now: float, timeout_s: float) -> Job:
    """A job first heard of through a callback: final at once, or running and due a source timeout from now
    (row_id 0 until it is stored)."""
    status = transition(None, callback.status).status
    assert status is not None  # a job's first callback always changes it
    final = status.final
    return Job(
        source=source,
        job_id=callback.job_id,
        status=status,
        result=callback.result if final else None,
        error=callback.error if final else None,
        late=False,
        metadata={},
        created_at=now,
        updated_at=now,
        finished_at=now if final else None,
        deadline=now + timeout_s,
        callbacks=1,
        progress=progress_of(callback),
    )


def apply_callback(job: Job, callback: Callback, now: float, timeout_s: float) -> JobChange:
    """A callback to a known job (not a redelivery): it counts, and it moves the job as `transition` says;
    a non-final payload that is news to a running job is kept as its `progress`."""
    step = transition(job.status, callback.status)
    if step.status is None:
        payload = new_progress(job, callback)
        if payload is not None:
            after = replace(job, progress=payload, updated_at=now, callbacks=job.callbacks + 1)
            return JobChange(after, step, duplicate=False, progressed=True)
        after = replace(job, callbacks=job.callbacks + 1)
    elif step.status.final:
        after = replace(
            job,
            status=step.status,
            late=step.late,
            result=callback.result,
            error=callback.error,
            updated_at=now,
            finished_at=now,
            callbacks=job.callbacks + 1,
        )
    else:  # first word from the provider: a job without its own timeout is due a source timeout from now
        after = replace(
            job,
            status=step.status,
            updated_at=now,
            callbacks=job.callbacks + 1,
            deadline=now + timeout_s if job.timeout_s is None else job.deadline,
            progress=progress_of(callback),
        )
    # Anything reaching a job already final (but a late result after timed_out) changes nothing.
    return JobChange(after, step, duplicate=job.final and not step.changed)


@record
class RegistrationChange:
    """What a registration does: the job as it will stand, and the subscribers it did not have."""

    job: Job
    new_subscribers: tuple[str, ...]  # a job already final owes them its final event


def merge_registration(
    job: Job | None, registration: Registration, now: float, timeout_s: float
) -> RegistrationChange:
    """A registration makes a pending job (row_id 0 until stored) or merges into the known one: metadata (its
    keys win), subscribers (added in order), and its own timeout, which re-times an open job from creation."""
    if job is None:
        created = Job(
            source=registration.source,
            job_id=registration.job_id,
            status=Status.PENDING,
            result=None,
            error=None,
            late=False,
            metadata=registration.metadata,
            created_at=now,
            updated_at=now,
            finished_at=None,
            deadline=now + (registration.timeout_s or timeout_s),
            callbacks=0,
            subscribers=registration.subscribers,
            timeout_s=registration.timeout_s,
        )
        return RegistrationChange(created, registration.subscribers)
    own_timeout_s = registration.timeout_s
    merged = replace(
        job,
        metadata={**job.metadata, **registration.metadata},
        subscribers=tuple(dict.fromkeys((*job.subscribers, *registration.subscribers))),
        timeout_s=job.timeout_s if own_timeout_s is None else own_timeout_s,
        deadline=job.deadline if own_timeout_s is None or job.final else job.created_at + own_timeout_s,
        updated_at=now,
    )
    added = tuple(url for url in registration.subscribers if url not in job.subscribers)
    return RegistrationChange(merged, added)


def time_out(job: Job, now: float) -> JobChange | None:
    """The sweeper's time-out of a job still open and overdue at `now`; None when it no longer is (a callback
    got there first, or its deadline moved)."""
    if job.final or job.deadline is None or job.deadline > now:
        return None
    # Built field by field: `replace` is several times slower, once per job of a sweep (a test pins that
    # every other field is kept).
    timed_out = Job(
        source=job.source,
        job_id=job.job_id,
        status=Status.TIMED_OUT,
        result=job.result,
        error=job.error,
        late=job.late,
        metadata=job.metadata,
        created_at=job.created_at,
        updated_at=now,
        finished_at=now,
        deadline=job.deadline,
        callbacks=job.callbacks + 1,
        row_id=job.row_id,
        subscribers=job.subscribers,
        timeout_s=job.timeout_s,
        progress=job.progress,
        files=job.files,
    )
    return JobChange(timed_out, _TO[Status.TIMED_OUT], duplicate=False)


def time_out_entry(job: Job) -> Callback:
    """The history entry a time-out leaves: a delivery ID of its own (128 random bits): always kept."""
    # Uniqueness within the job is all it needs (as for `new_event_id`): no uuid4, a system call per entry.
    return Callback(job.job_id, Status.TIMED_OUT, f"sweep_{random.getrandbits(128):032x}", b"{}", via="sweep")


def extended_deadline(job: Job, now: float, timeout_s: float, max_deadline_s: float) -> float | None:
    """The new deadline of an overdue job its provider says is still running: a source timeout from now, never
    past `max_deadline_s` after its creation; None once that cap is reached."""
    deadline = min(now + timeout_s, job.created_at + max_deadline_s)
    return deadline if deadline > now else None


def reconcile_at(job: Job, reconcile_after_s: float | None) -> float | None:
    """When to ask the provider about a new job in case its callback never comes: `reconcile_after_s` after
    its creation; never for a job final at once, nor for a source that does not ask early."""
    return None if reconcile_after_s is None or job.final else job.created_at + reconcile_after_s
