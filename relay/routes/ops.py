"""Operations: health, metrics, and where a source's webhooks go."""

from __future__ import annotations

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from relay.database_metrics import read_database_gauges
from relay.errors import NotFound, ServiceUnavailable
from relay.routes.common import authorize, json_response, services

__all__ = ["routes"]


async def healthz(request: Request) -> Response:
    """200 while the database takes reads and writes and every background loop runs clean; else 503 naming
    the cause (`database_busy`, `writes_failing`, `database_down`, `loop_failing`). Never waits on a lock."""
    svc = services(request)
    try:
        await svc.store.ping()
    except ServiceUnavailable:
        raise
    except Exception as exc:
        raise ServiceUnavailable(f"the database does not answer: {exc}", "database_down") from None
    for loop in svc.loops:
        if (problem := loop.problem()) is not None:
            raise ServiceUnavailable(problem, "loop_failing")
    return json_response({"status": "ok"})


async def metrics(request: Request) -> Response:
    """Prometheus text; gauges that are cheap to read are read now (from the database, within a bound)."""
    svc = services(request)
    if svc.settings.metrics_require_key:
        authorize(request)
    svc.metrics.waiters.set(svc.hub.count)
    for loop in svc.loops:
        if loop.last_success_at is not None:
            svc.metrics.loop_success.labels(loop.name).set(loop.last_success_at)
    await read_database_gauges(svc.metrics, svc.store, svc.clock())
    return Response(generate_latest(svc.metrics.registry), media_type=CONTENT_TYPE_LATEST)


async def get_source(request: Request) -> Response:
    """A configured source: its kind and the URL to hand its provider."""
    svc = services(request)
    authorize(request)
    name = request.path_params["name"]
    source = svc.settings.sources.get(name)
    if source is None:
        raise NotFound(f"no source named {name!r} is configured", "unknown_source")
    return json_response(
        {
            "name": name,
            "kind": source.kind,
            "webhook_url": svc.webhook_url(name),
            "timeout_s": source.timeout_s,
            "tolerance_s": source.tolerance_s,
        }
    )


routes = [
    Route("/healthz", healthz, methods=["GET"]),
    Route("/metrics", metrics, methods=["GET"]),
    Route("/v1/sources/{name}", get_source, methods=["GET"]),
]
