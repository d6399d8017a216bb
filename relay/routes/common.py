"""What every handler shares: JSON answers, bounded body reads, and API-key or ticket auth."""

from __future__ import annotations

import hmac
from typing import TYPE_CHECKING, Any

import orjson
from starlette.requests import Request
from starlette.responses import Response

from relay.errors import Forbidden, PayloadTooLarge, RelayError, Unauthorized

if TYPE_CHECKING:
    from relay.app import Services

__all__ = ["authorize", "error_response", "json_response", "read_body", "services"]


def json_response(content: Any, status_code: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(orjson.dumps(content), status_code, headers, media_type="application/json")


def error_response(exc: RelayError) -> Response:
    return json_response({"error": {"code": exc.code, "message": exc.message}}, exc.status)


def services(request: Request) -> Services:
    return request.app.state.services  # type: ignore[no-any-return]


async def read_body(request: Request, limit: int) -> bytes:
    """The body, refused with 413 as soon as it passes `limit` bytes (before it is all read)."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge(f"the body is larger than {limit} bytes")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(f"the body is larger than {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def _api_key_ok(request: Request, api_keys: tuple[str, ...]) -> bool | None:
    """True/False for a presented bearer key; None when none was presented."""
    header = request.headers.get("authorization")
    if header is None:
        return None
    scheme, _, key = header.partition(" ")
    if scheme.lower() != "bearer" or not key:
        return False
    presented = key.strip().encode()
    ok = False
    for known in api_keys:  # every key is compared, so timing does not tell which one is close
        ok |= hmac.compare_digest(presented, known.encode())
    return ok


def authorize(request: Request, job: tuple[str, str] | None = None) -> None:
    """Require an API key, or, when `job` is given, a ticket for exactly that job."""
    svc = services(request)
    key_ok = _api_key_ok(request, svc.settings.api_keys)
    if key_ok:
        return
    if key_ok is False:
        raise Unauthorized("the API key is not valid", "bad_api_key")
    ticket = request.query_params.get("ticket")
    if ticket is None:
        raise Unauthorized("an API key is required: Authorization: Bearer KEY", "missing_api_key")
    ticket_job = svc.tokens.ticket_job(ticket)
    if ticket_job is None:
        raise Unauthorized("the ticket is not valid", "bad_ticket")
    if job is None:
        raise Forbidden("a ticket reads only its own job; listing needs an API key", "ticket_scope")
    if ticket_job != job:
        raise Forbidden("the ticket is for another job", "ticket_scope")
