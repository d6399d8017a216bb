"""Inbound callbacks from providers: `POST /hooks/{source}` and `POST /hooks/{source}/{token}`."""

from __future__ import annotations

import time

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from relay.errors import RelayError
from relay.routes.common import json_response, plain_headers, read_body, services

__all__ = ["routes"]


async def receive_callback(request: Request) -> Response:
    """Verify, store and acknowledge one callback; 200 only after it is committed."""
    svc = services(request)
    started = time.perf_counter()
    source = request.path_params["source"]
    headers = plain_headers(request)
    try:
        body = await read_body(request, svc.settings.max_body_bytes, headers)
        outcome = await svc.ingestor.ingest(source, headers, body, request.path_params.get("token"))
    except RelayError as exc:
        known = source if source in svc.providers else "_unknown"  # bounded label values
        svc.metrics.callback(known, "rejected", exc.code).inc()
        raise
    svc.metrics.callback(source, "duplicate" if outcome.duplicate else "accepted").inc()
    svc.metrics.ingest_seconds.observe(time.perf_counter() - started)
    return json_response(
        {"accepted": True, "source": source, "job_id": outcome.job.job_id, "duplicate": outcome.duplicate}
    )


routes = [
    Route("/hooks/{source}", receive_callback, methods=["POST"]),
    Route("/hooks/{source}/{token}", receive_callback, methods=["POST"]),
]
