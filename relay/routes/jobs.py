"""Jobs: register, read (with long-poll), list."""

from __future__ import annotations

import asyncio
import re
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import Receive

from relay.cancel import request_cancel
from relay.errors import BadRequest, Conflict, NotFound
from relay.hub import Waiter
from relay.jsoncodec import dumps
from relay.models import MAX_TIMEOUT_S, Job, Registration, Status, is_seconds
from relay.providers.base import job_id_of, load_object
from relay.routes.common import (
    RawPathRoute,
    authorize,
    configured_source,
    json_response,
    next_cursor,
    page,
    read_body,
    services,
    status_filter,
)
from relay.routes.subscriptions import check_subscriber_urls

__all__ = ["routes"]

# Each is checked (DNS included) before the job is stored and gets its own deliveries: a handful is plenty.
MAX_JOB_SUBSCRIBERS = 20
_PREFER_WAIT = re.compile(r"(?:^|[,;\s])wait\s*=\s*([0-9]+(?:\.[0-9]+)?)", re.IGNORECASE)


def _wait_seconds(request: Request, max_wait_s: float) -> float | None:
    """`?wait=S` or `Prefer: wait=S` (the query wins); None when neither asks to wait."""
    raw = request.query_params.get("wait")
    if raw is None:
        match = _PREFER_WAIT.search(request.headers.get("prefer", ""))
        raw = match.group(1) if match else None
    if raw is None:
        return None
    try:
        wait = float(raw)
    except ValueError:
        raise BadRequest(f"wait must be a number of seconds, got {raw!r}", "bad_wait") from None
    if not 0 < wait <= max_wait_s:
        raise BadRequest(f"wait must be more than 0 and at most {max_wait_s:g} seconds", "bad_wait")
    return wait


async def _until_disconnect(receive: Receive, waiter: Waiter) -> None:
    """Wake the waiter when the client hangs up, so its slot is freed at once."""
    while (await receive())["type"] != "http.disconnect":
        pass
    waiter.wake()


async def get_job(request: Request) -> Response:
    """The job; with a wait, held until it is final, the time is up, or the client leaves."""
    svc = services(request)
    key = (request.path_params["source"], request.path_params["job_id"])
    authorize(request, key)
    wait = _wait_seconds(request, svc.settings.max_wait_s)
    if wait is None:
        job = await svc.store.get_job(*key)
    else:
        job, client_left = await _long_poll(request, key, wait)
        if client_left:
            return Response(status_code=499)  # nobody is listening; the server drops it
    if job is None:
        raise NotFound(f"no job {key[1]!r} from source {key[0]!r}", "unknown_job")
    headers = (
        {"Preference-Applied": f"wait={wait:g}"} if wait is not None and "prefer" in request.headers else None
    )
    return Response(_job_body(job), headers=headers, media_type="application/json")


_last_encoded: tuple[Job, bytes] | None = None


def _job_body(job: Job) -> bytes:
    """The job's JSON. Waiters woken by one commit answer with the same (immutable) Job, one after another,
    so remembering the last one encodes it once for all of them."""
    global _last_encoded
    last = _last_encoded
    if last is not None and last[0] is job:
        return last[1]
    body = dumps(job.to_public())
    _last_encoded = (job, body)
    return body


async def _long_poll(request: Request, key: tuple[str, str], wait: float) -> tuple[Job | None, bool]:
    """The job once final or when `wait` is up, and whether the client left first."""
    svc = services(request)
    loop = asyncio.get_running_loop()
    until = loop.time() + wait
    # Subscribe before reading, so a result committed between the read and the wait still wakes us.
    async with svc.hub.subscribe(key) as waiter:
        job = await svc.store.get_job(*key)
        if job is not None and job.final:
            return job, False
        watcher = asyncio.ensure_future(_until_disconnect(request.receive, waiter))
        try:
            while (remaining := until - loop.time()) > 0:
                woken = await waiter.wait(min(remaining, svc.waiter_poll_s))
                if watcher.done():
                    return None, True
                if svc.hub.closing:  # shutting down: answer the job as it stands, like an expired wait
                    return await svc.store.get_job(*key), False
                # The hub hands over the committed job when it has it; otherwise the store is asked again.
                job = waiter.job if woken and waiter.job is not None else await svc.store.get_job(*key)
                if job is not None and job.final:
                    break
        finally:
            watcher.cancel()
    return job, False


async def register_job(request: Request) -> Response:
    """Register a job (201) or merge into the one a callback already made (200)."""
    svc = services(request)
    authorize(request)
    doc = load_object(await read_body(request, svc.settings.max_body_bytes))
    registration = _registration(doc, svc.providers.keys())
    if registration.subscribers:
        if not svc.settings.signing_secret:
            raise BadRequest(
                "per-job subscribers are signed with signing_secret: set it in the config first",
                "no_signing_secret",
            )
        await check_subscriber_urls(request, registration.subscribers)
    source = svc.settings.sources[registration.source]
    job, created = await svc.store.register(
        registration, svc.clock(), source.timeout_s, source.reconcile_after_s
    )
    if job.final and registration.subscribers:  # a finished job's result may have been queued for new ones
        svc.wake_deliverer()
    body = job.to_public()
    body["ticket"] = svc.tokens.ticket(job.source, job.job_id)
    body["webhook_url"] = svc.webhook_url(job.source)
    return json_response(body, 201 if created else 200)


def _registration(doc: dict[str, Any], sources: Any) -> Registration:
    unknown = set(doc) - {"source", "job_id", "timeout_s", "subscribers", "metadata"}
    if unknown:
        raise BadRequest(f"unknown field(s): {', '.join(sorted(unknown))}", "bad_field")
    source = configured_source(doc.get("source"), sources)
    job_id = job_id_of(doc.get("job_id"), "/job_id")
    timeout_s = doc.get("timeout_s")
    if timeout_s is not None and not is_seconds(timeout_s):
        raise BadRequest(
            f"timeout_s must be a number of seconds above 0 and at most {MAX_TIMEOUT_S:g}", "bad_field"
        )
    subscribers = doc.get("subscribers") or []
    if (
        not isinstance(subscribers, list)
        or len(subscribers) > MAX_JOB_SUBSCRIBERS
        or not all(isinstance(url, str) and url.startswith(("http://", "https://")) for url in subscribers)
    ):
        raise BadRequest(
            f"subscribers must be a list of at most {MAX_JOB_SUBSCRIBERS} http(s) URLs", "bad_field"
        )
    metadata = doc.get("metadata") or {}
    if not isinstance(metadata, dict):
        raise BadRequest("metadata must be an object", "bad_field")
    return Registration(
        source, job_id, None if timeout_s is None else float(timeout_s), tuple(subscribers), metadata
    )


async def list_jobs(request: Request) -> Response:
    """Jobs newest first, filtered by source and status, with an opaque cursor for the next page."""
    svc = services(request)
    authorize(request)
    params = request.query_params
    status = status_filter(request, Status)
    limit, before = page(request)
    jobs = await svc.store.list_jobs(
        source=params.get("source") or None,
        status=status,
        limit=limit,
        before=before,
    )
    cursor = next_cursor([job.row_id for job in jobs], limit)
    return json_response({"jobs": [job.to_public() for job in jobs], "next_cursor": cursor})


async def cancel_job(request: Request) -> Response:
    """Ask the job's provider to cancel it (API key only: a ticket reads, it does not act); 202 with the job
    once the provider took the request."""
    svc = services(request)
    authorize(request)
    key = (request.path_params["source"], request.path_params["job_id"])
    job = await svc.store.get_job(*key)
    if job is None:
        raise NotFound(f"no job {key[1]!r} from source {key[0]!r}", "unknown_job")
    if job.final:
        raise Conflict(f"job {key[1]!r} already ended ({job.status.value})", "already_final")
    provider = svc.providers.get(job.source)
    if provider is None:  # a job of a source since removed from the config
        raise Conflict(f"source {job.source!r} is no longer configured", "cancel_unsupported")
    outcome, answer = await request_cancel(
        provider, job, svc.provider_http, svc.ingestor, svc.clock(), svc.settings.reconcile_timeout_s
    )
    return json_response({**outcome.job.to_public(), "provider_status_code": answer.status_code}, 202)


routes = [
    Route("/v1/jobs", register_job, methods=["POST"]),
    Route("/v1/jobs", list_jobs, methods=["GET"]),
    RawPathRoute("/v1/jobs/{source}/{job_id}", get_job, methods=["GET"]),
    RawPathRoute("/v1/jobs/{source}/{job_id}/cancel", cancel_job, methods=["POST"]),
]
