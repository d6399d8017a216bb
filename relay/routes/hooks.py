"""Inbound callbacks from providers: `POST /hooks/{source}` and `POST /hooks/{source}/{token}`."""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING

from starlette._utils import get_route_path
from starlette.requests import ClientDisconnect
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from relay.errors import InternalError, RelayError
from relay.logs import log_event
from relay.routes.common import error_response, headers_of, receive_body, send_json

if TYPE_CHECKING:
    from relay.services import Services

__all__ = ["CallbackEndpoint", "endpoint", "hook_params", "routes"]


log = logging.getLogger(__name__)

PREFIX = "/hooks/"


def hook_params(scope: Scope) -> dict[str, str] | None:
    """`{"source": ...}` (and `"token"`) of a `POST /hooks/{source}[/{token}]`, as Starlette's routes would
    match it; None for any other request."""
    path = get_route_path(scope)
    if scope["method"] != "POST" or not path.startswith(PREFIX):
        return None
    parts = path[len(PREFIX) :].split("/")
    if not all(parts) or len(parts) > 2:
        return None
    return {"source": parts[0]} if len(parts) == 1 else {"source": parts[0], "token": parts[1]}


class CallbackEndpoint:
    """Verify, store and acknowledge one callback; 200 only after it is committed.

    A plain ASGI app rather than a Request -> Response function, and one that answers its own errors: this
    is the hottest path, and `RelayApp` sends it here ahead of Starlette's middleware and router.
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
            _rejected(logging.WARNING, source, exc.code, exc.status, started)
            await error_response(exc)(scope, receive, send)
            return
        except ClientDisconnect:  # the sender hung up before its body was complete: nothing to answer
            svc.metrics.callback(self._label(svc, source), "rejected", "client_disconnect").inc()
            _rejected(logging.INFO, source, "client_disconnect", None, started)
            return
        except Exception:  # a bug: the provider retries a 500, and the traceback tells us why
            log_event(log, logging.ERROR, "callback.failed", source=source, exc_info=True)
            svc.metrics.callback(self._label(svc, source), "rejected", "internal").inc()
            await error_response(InternalError("relay could not store this callback; the error is logged"))(
                scope, receive, send
            )
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


def _rejected(level: int, source: str, reason: str, status_code: int | None, started: float) -> None:
    """`callback.rejected` with the error code as `reason`: never the body, its headers or the URL's token."""
    if log.isEnabledFor(level):
        latency_ms = round((time.perf_counter() - started) * 1000, 2)
        log_event(
            log,
            level,
            "callback.rejected",
            source=source,
            reason=reason,
            status_code=status_code,
            latency_ms=latency_ms,
        )


endpoint = CallbackEndpoint()
routes = [
    Route("/hooks/{source}", endpoint, methods=["POST"]),
    Route("/hooks/{source}/{token}", endpoint, methods=["POST"]),
]
