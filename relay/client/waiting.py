"""`wait()` as a plan of long-polls, without I/O: the sync and async clients send what `next_call()` says
and hand each answer (or failure) back, which is either the final job or how long to pause first."""

from __future__ import annotations

import time
from collections.abc import Callable

import httpx

from relay.client import calls
from relay.client.errors import RelayError, WaitTimeout, error_from_answer
from relay.client.models import Job
from relay.client.retrying import Retrying

__all__ = ["WaitPlan"]


class WaitPlan:
    """Long-poll `source`/`job_id` until it is final or `timeout` seconds pass (None: no limit)."""

    def __init__(
        self,
        source: str,
        job_id: str,
        timeout: float | None,
        *,
        poll_s: float,
        max_outage_s: float,
        client_timeout: float,
        base_url: object,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.source = source
        self.job_id = job_id
        self.job: Job | None = None  # as last seen
        self._timeout = timeout
        self._poll_s = poll_s
        self._client_timeout = client_timeout
        self._clock = clock
        self._deadline = None if timeout is None else clock() + timeout
        self._retrying = Retrying(max_outage_s, base_url, clock)
        self._asked = 0.0
        self._sent_at = 0.0

    def next_call(self) -> calls.Call:
        """The next long-poll; raises `WaitTimeout` (or why relay did not answer) once the time is up."""
        remaining = self._remaining()
        if remaining is not None and remaining <= 0:
            raise self._timed_out()
        wait = self._poll_s if remaining is None else max(0.001, min(self._poll_s, remaining))
        self._asked, self._sent_at = wait, self._clock()
        return calls.get_job(self.source, self.job_id, wait, self._client_timeout)

    def on_answer(self, status_code: int, body: bytes) -> Job | float:
        """The final job, or the pause before the next long-poll."""
        if status_code == 200:
            self.job = Job.from_dict(calls.answer(status_code, body))
            if self.job.is_final:
                return self.job
        else:
            error = error_from_answer(status_code, body)
            if error.code != "unknown_job":  # a job not known yet is waited for, as relay does
                return self._bounded(self._retrying.failed(error))
        # Not final yet. A poll answered well before its wait was up comes from a relay that is stopping (or
        # a proxy): back off, so that it is not asked again and again.
        self._retrying.reachable()
        if self._clock() - self._sent_at < self._asked / 2:
            return self._bounded(self._retrying.slow_down())
        self._retrying.reset()
        return 0.0

    def on_transport_error(self, exc: httpx.TransportError) -> float:
        """The pause before trying again after a request that got no answer (refused, dropped, timed out)."""
        return self._bounded(self._retrying.transport_failed(exc))

    def _remaining(self) -> float | None:
        return None if self._deadline is None else self._deadline - self._clock()

    def _bounded(self, delay: float) -> float:
        remaining = self._remaining()
        return delay if remaining is None else max(0.0, min(delay, remaining))

    def _timed_out(self) -> RelayError:
        if self._retrying.last_error is not None:  # relay was not answering when the time ran out
            return self._retrying.last_error
        state = "still unknown" if self.job is None else f"still {self.job.status}"
        return WaitTimeout(
            f"job {self.job_id!r} of source {self.source!r} is {state} after {self._timeout:g} s", self.job
        )
