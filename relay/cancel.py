"""Cancel: ask a job's provider to cancel it, and record the request in the job's history.

The provider's answer is stored as a history entry `via: cancel` through the ingest path (one transaction,
deduplicated by delivery ID): `canceled` when the answer says so (the job becomes canceled, its event and
deliveries follow), else the job's own status, which changes nothing. The job ends when the provider's
callback (or the sweeper's reconcile) says it did.
"""

from __future__ import annotations

import asyncio
import logging

import httpx

from relay.errors import BadGateway, Conflict
from relay.ingest import Ingestor
from relay.logs import log_event
from relay.models import Callback, IngestOutcome, Job, Status
from relay.providers import Provider
from relay.providers.base import derived_delivery_id
from relay.providers.cancel import CancelAnswer, CancelOutcome

__all__ = ["cancel_entry", "request_cancel"]

log = logging.getLogger(__name__)


def cancel_entry(job: Job, answer: CancelAnswer) -> Callback:
    """The history entry of a cancel request the provider took. Its delivery ID holds the answer's HTTP
    status and the entry's status (`{job}:cancel-202-running`): asking again, answered alike, adds none."""
    canceled = answer.outcome is CancelOutcome.CANCELED
    status = Status.CANCELED if canceled else job.status
    return Callback(
        job_id=job.job_id,
        status=status,
        delivery_id=derived_delivery_id(job.job_id, f"cancel-{answer.status_code}-{status.value}"),
        body=answer.body,
        result=answer.result if canceled else None,
        error=answer.error if canceled else None,
        via="cancel",
    )


async def request_cancel(
    provider: Provider,
    job: Job,
    http: httpx.AsyncClient,
    ingestor: Ingestor,
    now: float,
    timeout_s: float,
) -> tuple[IngestOutcome, CancelAnswer]:
    """Ask the provider to cancel an open job and record its answer; 409 `cancel_unsupported` (no cancel API,
    no token) or `already_final` (the provider says it already ended), 502 `provider_error` otherwise."""
    try:
        answer = await _ask(provider, job, http, timeout_s)
    except BadGateway as exc:
        source, job_id = job.source, job.job_id
        log_event(log, logging.WARNING, "job.cancel_failed", source=source, job_id=job_id, error=exc.message)
        raise
    if answer.outcome is CancelOutcome.ENDED:
        raise Conflict(
            f"{provider.kind} says job {job.job_id!r} already ended; its callback brings how", "already_final"
        )
    outcome = await ingestor.accept(provider.source, cancel_entry(job, answer), now)
    log_event(
        log,
        logging.INFO,
        "job.cancel_requested",
        source=job.source,
        job_id=job.job_id,
        provider_status=answer.status_code,
        status=outcome.job.status.value,
    )
    return outcome, answer


async def _ask(provider: Provider, job: Job, http: httpx.AsyncClient, timeout_s: float) -> CancelAnswer:
    """The provider's answer within `timeout_s` (the whole call, as the sweeper's reconcile), else a 502."""
    try:
        async with asyncio.timeout(timeout_s):
            return await provider.cancel(job, http)
    except TimeoutError:
        raise BadGateway(
            f"the provider's API did not answer the cancel request within {timeout_s:g} s"
        ) from None
