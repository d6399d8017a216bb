"""What every handler shares: JSON answers, bounded body reads, and API-key or ticket auth."""

from __future__ import annotations

import base64
import binascii
import hmac
from collections.abc import Container, Sequence
from enum import StrEnum
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import unquote_to_bytes

from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.routing import Match, Route
from starlette.types import Receive, Scope, Send

from relay.cors import api_key_refused
from relay.errors import BadRequest, Forbidden, PayloadTooLarge, RelayError, Unauthorized
from relay.jsoncodec import dumps

if TYPE_CHECKING:
    from relay.services import Services

__all__ = [
    "MAX_LIST_LIMIT",
    "RawPathRoute",
    "authorize",
    "configured_source",
    "error_response",
    "headers_of",
    "json_response",
    "next_cursor",
    "page",
    "read_body",
    "receive_body",
    "row_id",
    "send_json",
    "services",
]

MAX_LIST_LIMIT = 500


def json_response(content: Any, status_code: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(dumps(content), status_code, headers, media_type="application/json")


async def send_json(send: Send, content: Any) -> None:
    """A 200 JSON answer sent as ASGI messages, for a handler that is a plain ASGI app."""
    body = dumps(content)
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(body))],
        }
    )
    await send({"type": "http.response.body", "body": body})


def configured_source(source: Any, sources: Container[str]) -> str:
    """`source` from a body, refused (400 `unknown_source`) unless it names a configured source."""
    if not isinstance(source, str) or source not in sources:
        raise BadRequest(f"source {source!r} is not configured", "unknown_source")
    return source


def error_response(exc: RelayError) -> Response:
    return json_response({"error": {"code": exc.code, "message": exc.message}}, exc.status)


def page(request: Request) -> tuple[int, int | None]:
    """`?limit=` (default 50) and `?cursor=` of a list request: the page size and the id to start below."""
    params = request.query_params
    limit = row_id(params.get("limit", "50"))
    if limit is None or not 1 <= limit <= MAX_LIST_LIMIT:
        raise BadRequest(f"limit must be an integer from 1 to {MAX_LIST_LIMIT}", "bad_limit")
    cursor = params.get("cursor") or None
    before = None if cursor is None else _position(cursor)
    if cursor is not None and before is None:
        raise BadRequest("cursor must be the next_cursor of an earlier answer", "bad_cursor")
    return limit, before


def next_cursor(positions: Sequence[int], limit: int) -> str | None:
    """The `next_cursor` of a full page whose items stand at `positions` (None after the last page).

    Opaque to clients, so that what a page position is (a row id today) may change with the backend."""
    if len(positions) < limit:
        return None
    return base64.urlsafe_b64encode(b"%s%d" % (_CURSOR_PREFIX, positions[-1])).rstrip(b"=").decode()


_CURSOR_PREFIX = b"r"


def _position(cursor: str) -> int | None:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
    except (ValueError, binascii.Error):  # not base64, or not ASCII at all
        return None
    if not raw.startswith(_CURSOR_PREFIX):
        return None
    return row_id(raw[len(_CURSOR_PREFIX) :].decode("latin-1"))


_MAX_ROW_ID = 2**63 - 1  # the largest integer the databases store


def row_id(text: str) -> int | None:
    """A non-negative integer written in ASCII digits that a database can hold, else None."""
    if not (text.isascii() and text.isdigit()) or len(text) > 19 or int(text) > _MAX_ROW_ID:
        return None
    return int(text)


E = TypeVar("E", bound=StrEnum)


def status_filter(request: Request, statuses: type[E]) -> E | None:
    """`?status=` of a list request as one of `statuses`, or None when absent; 400 naming the known ones."""
    value = request.query_params.get("status") or None
    if value is None:
        return None
    try:
        return statuses(value)
    except ValueError:
        known = ", ".join(s.value for s in statuses)
        raise BadRequest(f"unknown status {value!r} (one of {known})", "bad_status") from None


class RawPathRoute(Route):
    """A route whose `{params}` are matched on the raw path and then percent-decoded, so that a job ID holding
    `/` (sent as `%2F`), `%`, `.` or `..` reads back exactly: on the decoded path `a%2Fb` would be two
    segments, and `..` would be nothing a route could match."""

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        raw = _raw_route_path(scope) if scope["type"] == "http" else None
        if raw is None:
            return super().matches(scope)
        found = self.path_regex.match(raw)
        if found is None:
            return Match.NONE, {}
        try:
            params = {k: unquote_to_bytes(v.encode("latin-1")).decode() for k, v in found.groupdict().items()}
        except UnicodeDecodeError:  # no stored ID is invalid UTF-8, so no route here can find it
            return Match.NONE, {}
        child_scope = {"endpoint": self.endpoint, "path_params": {**scope.get("path_params", {}), **params}}
        return (
            Match.PARTIAL if self.methods and scope["method"] not in self.methods else Match.FULL
        ), child_scope


def _raw_route_path(scope: Scope) -> str | None:
    """The request's path as sent (percent-escapes kept), less the root path, as Starlette's route path."""
    raw: bytes | None = scope.get("raw_path")
    if raw is None:
        return None
    path = raw.partition(b"?")[0].decode("latin-1")  # some ASGI clients put the query in raw_path
    root = scope.get("root_path", "")
    if root and path.startswith(root) and path[len(root) : len(root) + 1] == "/":
        return path[len(root) :]
    return path


def services(request: Request) -> Services:
    return request.app.state.services  # type: ignore[no-any-return]


def headers_of(scope: Scope) -> dict[str, str]:
    """A request's headers as a dict of lower-case names (the first of a repeated one wins, as in
    Starlette), built once for a handler that reads many: `Headers` scans its list on every lookup."""
    return {name.decode("latin-1"): value.decode("latin-1") for name, value in reversed(scope["headers"])}


async def read_body(request: Request, limit: int) -> bytes:
    """The body, refused with 413 as soon as it passes `limit` bytes (before it is all read)."""
    return await receive_body(request.receive, limit, request.headers.get("content-length"))


async def receive_body(receive: Receive, limit: int, declared: str | None) -> bytes:
    """`read_body` on the ASGI messages themselves; `declared` is the Content-Length header.

    A body still short `body_timeout_s` after its headers makes `receive` itself raise `RequestTimeout` (408,
    relay/http_protocol.py): the server's sweep times it, so no timer is set here for each request.
    """
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge(f"the body is larger than {limit} bytes")
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientDisconnect()
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(f"the body is larger than {limit} bytes")
        chunks.append(chunk)
        if not message.get("more_body", False):
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
    origin = request.headers.get("origin")
    if key_ok is not None and api_key_refused(origin, svc.settings.cors_origins):
        # A key in a page on any site not listed is refused, even where a proxy answered its preflight.
        raise Forbidden(f"no API key is taken from pages on {origin}: not in cors_origins", "origin_refused")
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
