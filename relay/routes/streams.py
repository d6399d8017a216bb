"""A job's status stream (server-sent events) and its callback history."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from relay.domain.progress import coalesced
from relay.errors import BadRequest, NotFound, ServiceUnavailable
from relay.jsoncodec import dumps
from relay.models import Event
from relay.routes.common import RawPathRoute, authorize, json_response, row_id, services

__all__ = ["routes"]

_HEARTBEAT = b": heartbeat\n\n"
# The hub's timers may fire up to a millisecond early (uvloop counts whole milliseconds): a heartbeat due
# within this is due now, rather than one more wait of under a millisecond.
_HEARTBEAT_SLACK_S = 0.002


# Line breaks to Python's str.splitlines (and some SSE clients), though not to the SSE spec: inside JSON they
# can only stand in strings, where their escapes mean the same, so no client splits a message on them.
_LINE_BREAKS_BEYOND_SSE = (
    (b"\xc2\x85", b"\\u0085"),
    (b"\xe2\x80\xa8", b"\\u2028"),
    (b"\xe2\x80\xa9", b"\\u2029"),
)


def _sse(event: Event) -> bytes:
    data = dumps(event.to_public())
    for raw, escaped in _LINE_BREAKS_BEYOND_SSE:
        if raw in data:
            data = data.replace(raw, escaped)
    return b"id: %d\nevent: %s\ndata: %s\n\n" % (event.id, event.type.encode(), data)


async def job_events(request: Request) -> Response:
    """One SSE message per status change, resumable with Last-Event-ID, closed after a final state."""
    svc = services(request)
    key = (request.path_params["source"], request.path_params["job_id"])
    authorize(request, key)
    last = row_id(request.headers.get("last-event-id") or request.query_params.get("last_event_id") or "0")
    if last is None:
        raise BadRequest("Last-Event-ID must be an id this stream sent", "bad_last_event_id")
    headers = {"cache-control": "no-cache", "x-accel-buffering": "no"}
    job = await svc.store.get_job(*key)
    if job is not None and job.final and not job.archiving:
        # Nothing more can happen to it: its stored events are the whole stream, sent without a waiter.
        rest = coalesced(await svc.store.list_events(*key, last))
        if not rest:  # 204 is what tells EventSource to stop reconnecting (HTML's SSE model)
            return Response(status_code=204, headers={"cache-control": "no-cache"})
        return StreamingResponse(_sent(rest), media_type="text/event-stream", headers=headers)
    if svc.hub.count >= svc.hub.max_waiters:
        raise ServiceUnavailable(f"too many waiters held ({svc.hub.max_waiters})", "too_many_waiters")
    heartbeat_s = svc.settings.sse_heartbeat_s
    poll_s = svc.waiter_poll_s

    async def stream() -> AsyncIterator[bytes]:
        after = last
        # Subscribe before reading, so a change committed between the read and the wait still wakes us.
        async with svc.hub.subscribe(key) as waiter:
            heartbeat_at = time.monotonic() + heartbeat_s
            while True:
                # The job before its events: if it is final here, its final event is already stored.
                job = await svc.store.get_job(*key)
                # A burst of progress read in one go is sent as its newest (a chatty provider).
                for event in coalesced(await svc.store.list_events(*key, after)):
                    yield _sse(event)
                    after = event.id
                    heartbeat_at = time.monotonic() + heartbeat_s
                # A final job with files to archive has its job.archived event to come.
                if (job is not None and job.final and not job.archiving) or svc.hub.closing:
                    return
                # Until woken, the next poll, or the heartbeat's time, whichever comes first: a wake-up with
                # no event (or a poll) never pushes the heartbeat back.
                await waiter.wait(min(poll_s, max(heartbeat_at - time.monotonic(), 0.0)))
                if time.monotonic() >= heartbeat_at - _HEARTBEAT_SLACK_S:
                    yield _HEARTBEAT
                    heartbeat_at = time.monotonic() + heartbeat_s

    return StreamingResponse(stream(), media_type="text/event-stream", headers=headers)


async def _sent(events: list[Event]) -> AsyncIterator[bytes]:
    for event in events:
        yield _sse(event)


async def job_callbacks(request: Request) -> Response:
    """The job's history: each accepted callback, reconcile answer and sweep, oldest first."""
    svc = services(request)
    key = (request.path_params["source"], request.path_params["job_id"])
    authorize(request, key)
    if await svc.store.get_job(*key) is None:
        raise NotFound(f"no job {key[1]!r} from source {key[0]!r}", "unknown_job")
    history = await svc.store.list_callbacks(*key)
    return json_response({"callbacks": [entry.to_public() for entry in history]})


routes = [
    RawPathRoute("/v1/jobs/{source}/{job_id}/events", job_events, methods=["GET"]),
    RawPathRoute("/v1/jobs/{source}/{job_id}/callbacks", job_callbacks, methods=["GET"]),
]
