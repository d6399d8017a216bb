"""Inbound callbacks from providers: `POST /hooks/{source}` and `POST /hooks/{source}/{token}`."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from starlette.requests import ClientDisconnect
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from relay.errors import RelayError
from relay.routes.common import headers_of, receive_body, send_json

if TYPE_CHECKING:
    from relay.app import Services

__all__ = ["routes"]


class CallbackEndpoint:
    """Verify, store and acknowledge one callback; 200 only after it is committed.

    A plain ASGI app rather than a Request -> Response function: this is the hottest path, and Starlette's
    Request, Response and per-route exception wrapping cost about a tenth of it. Errors still reach the app's
    RelayError handler, through the ExceptionMiddleware around every route.
    """

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        svc: Services = scope["app"].state.services
        started = time.perf_counter()
        params = scope["path_params"]
        source = params["source"]
        headers = headers_of(scope)
        try:
            body = await receive_body(receive, svc.settings.max_body_bytes, headers.get("content-length"))
            outcome = await svc.ingestor.ingest(source, headers, body, params.get("token"))
        except RelayError as exc:
            svc.metrics.callback(self._label(svc, source), "rejected", exc.code).inc()
            raise
        except ClientDisconnect:  # the sender hung up before its body was complete: nothing to answer
            svc.metrics.callback(self._label(svc, source), "rejected", "client_disconnect").inc()
            return
        svc.metrics.callback(source, "duplicate" if outcome.duplicate else "accepted").inc()
        svc.metrics.ingest_seconds.observe(time.perf_counter() - started)
        answer = {
            "accepted": True,
            "source": source,
            "job_id": outcome.job.job_id,
            "duplicate": outcome.duplicate,
        }
        await send_json(send, answer)

    @staticmethod
    def _label(svc: Services, source: str) -> str:
        return source if source in svc.providers else "_unknown"  # bounded label values


_endpoint = CallbackEndpoint()
routes = [
    Route("/hooks/{source}", _endpoint, methods=["POST"]),
    Route("/hooks/{source}/{token}", _endpoint, methods=["POST"]),
]
