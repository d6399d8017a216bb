"""Jobs: the list (filters, search by job ID, pages, counts by status, live over SSE) and a job's page."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any

from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from relay.models import Job, Status
from relay.routes.common import next_cursor, page, services, status_filter
from relay.store.job_counts import JOB_COUNT_CAP
from relay.ui.guard import current_session, signed_in
from relay.ui.pages_deliveries import STATUS_LABELS
from relay.ui.rendering import query, render, render_fragment

__all__ = ["job_page", "jobs_list", "jobs_live"]

# How often an open jobs list reads the store again: changes show within this, whichever process made them.
LIVE_POLL_S = 1.0
# The hub key a live list waits on: never a job's key (no job has an empty source), woken at shutdown.
_LIVE_KEY = ("", "relay.ui.jobs")


def _shown(count: int, capped: bool) -> str:
    """A count as the page shows it: "10,000+" once the store stopped counting (JOB_COUNT_CAP)."""
    return f"{count:,}+" if capped else f"{count:,}"


async def _jobs_view(request: Request, first_page: bool = False) -> dict[str, Any]:
    """What the list shows for the request's filters (its first page only, if asked): its jobs, the counts by
    status (each capped: every view reads them, the live list once a second), the next page's link."""
    svc = services(request)
    params = request.query_params
    source = params.get("source") or None
    status = status_filter(request, Status)
    wanted = (params.get("q") or "").strip()
    limit, before = page(request)
    before = None if first_page else before
    cursor = None
    if wanted:  # one job ID, exactly, in each source asked for: the key the store looks jobs up by
        names = [source] if source else sorted(svc.settings.sources)
        found = [await svc.store.get_job(name, wanted) for name in names]
        jobs = [job for job in found if job is not None and (status is None or job.status == status)]
    else:
        jobs = await svc.store.list_jobs(source=source, status=status, limit=limit, before=before)
        cursor = next_cursor([job.row_id for job in jobs], limit)
    filters = {"source": source or "", "status": status.value if status else "", "q": wanted}
    read = await svc.store.count_jobs_capped()
    capped = {status for status, n in read.items() if n > JOB_COUNT_CAP}
    counts = {status: min(n, JOB_COUNT_CAP) for status, n in read.items()}
    return {
        "jobs": jobs,
        "counts": [(s.value, _shown(counts.get(s.value, 0), s.value in capped)) for s in Status],
        "total": _shown(sum(counts.values()), bool(capped)),
        "filters": filters,
        "sources": sorted(svc.settings.sources),
        "statuses": [s.value for s in Status],
        "next_page": query({**filters, "cursor": cursor}) if cursor else None,
        "first_page": before is None,
        "live_query": query(filters),
    }


@signed_in
async def jobs_list(request: Request) -> Response:
    """The jobs list, newest first; its first page follows changes live."""
    return render(request, "jobs.html", {"active": "jobs", **await _jobs_view(request)})


def _sse(event: str, html: str) -> bytes:
    """One SSE message whose data is `html` (each of its lines a `data:` line)."""
    lines = "".join(f"data: {line}\n" for line in html.splitlines())
    return f"event: {event}\n{lines}\n".encode()


@signed_in
async def jobs_live(request: Request) -> Response:
    """The list's counts and rows, sent again (SSE) each time they change; the page swaps them in."""
    svc = services(request)
    # A bad filter is refused here, before the stream starts; the stream is the first page, whatever cursor.
    view = await _jobs_view(request, first_page=True)
    heartbeat_s = svc.settings.sse_heartbeat_s

    async def stream() -> AsyncIterator[bytes]:
        nonlocal view
        sent = ""
        heartbeat_at = time.monotonic() + heartbeat_s
        # Held on the hub so that shutdown (which wakes every waiter) ends the stream at once.
        async with svc.hub.subscribe(_LIVE_KEY) as waiter:
            # Until shutdown, or until the session ends (the page then shows its last state).
            while not svc.hub.closing and current_session(request) is not None:
                html = render_fragment(request, "jobs_table.html", view)
                if html != sent:
                    yield _sse("jobs", html)
                    sent = html
                    heartbeat_at = time.monotonic() + heartbeat_s
                elif time.monotonic() >= heartbeat_at:
                    yield b": heartbeat\n\n"
                    heartbeat_at = time.monotonic() + heartbeat_s
                await waiter.wait(LIVE_POLL_S)
                view = await _jobs_view(request, first_page=True)

    headers = {"cache-control": "no-cache", "x-accel-buffering": "no"}
    return StreamingResponse(stream(), media_type="text/event-stream", headers=headers)


async def _job_view(request: Request, job: Job) -> dict[str, Any]:
    svc = services(request)
    key = (job.source, job.job_id)
    deliveries = await svc.store.list_deliveries(source=job.source, job_id=job.job_id, limit=100)
    return {
        "job": job,
        # Files come with archiving (job.files): shown when the job object has them.
        "files": job.to_public().get("files") or [],
        "history": await svc.store.list_callbacks(*key),
        "events": await svc.store.list_events(*key),
        "deliveries": deliveries,
        "labels": STATUS_LABELS,
    }


@signed_in
async def job_page(request: Request) -> Response:
    """One job: status, times, metadata, result, progress, files, history, events, deliveries."""
    svc = services(request)
    source, job_id = request.path_params["source"], request.path_params["job_id"]
    job = await svc.store.get_job(source, job_id)
    if job is None:
        values = {"message": f"No job {job_id!r} from source {source!r}."}
        return render(request, "problem_page.html", values, 404)
    return render(request, "job.html", {"active": "jobs", **await _job_view(request, job)})
