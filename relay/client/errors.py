"""The client's errors: one hierarchy under `RelayError`, each with relay's error `code`, the HTTP
`status_code` (None when no answer came) and the human `message`."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from relay.client.models import Job

__all__ = [
    "AlreadyFinal",
    "AuthError",
    "BadRequest",
    "CancelUnsupported",
    "Conflict",
    "Forbidden",
    "InvalidSignature",
    "NotFound",
    "RelayConnectionError",
    "RelayError",
    "Unauthorized",
    "Unavailable",
    "WaitTimeout",
    "error_from_answer",
]


class RelayError(Exception):
    """Anything relay refused, or that kept the client from getting an answer."""

    def __init__(self, message: str, code: str = "error", status_code: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.status_code = status_code

    def __str__(self) -> str:
        where = f"{self.status_code} " if self.status_code is not None else ""
        return f"{where}{self.code}: {self.message}"


class BadRequest(RelayError):
    """400: the request was malformed (a bad field, wait, cursor...)."""


class AuthError(RelayError):
    """401 or 403: no key, a bad key or ticket, or a ticket used beyond its one job."""


class Unauthorized(AuthError):
    """401: a missing or bad API key or ticket."""


class Forbidden(AuthError):
    """403: a ticket for another job or a key route, or a key from a refused origin."""


class NotFound(RelayError):
    """404: no such job, subscription, delivery or source."""


class Conflict(RelayError):
    """409: the request cannot be done in the current state."""


class CancelUnsupported(Conflict):
    """409 `cancel_unsupported`: the source's provider has no cancel API."""


class AlreadyFinal(Conflict):
    """409 `already_final`: the job already ended."""


class Unavailable(RelayError):
    """502, 503 or 504: relay (or a proxy before it) cannot answer now; `shutting_down` during a restart."""


class RelayConnectionError(RelayError):
    """No answer: the connection was refused, dropped or timed out."""

    def __init__(self, message: str) -> None:
        super().__init__(message, "connection_error", None)


class WaitTimeout(RelayError):
    """`wait()` reached its timeout before the job was final; `job` is the job last seen (None: unknown)."""

    def __init__(self, message: str, job: Job | None) -> None:
        super().__init__(message, "wait_timeout", None)
        self.job = job


class InvalidSignature(RelayError):
    """`verify_delivery` refused a delivery; `code` says why (`bad_signature`, `stale_timestamp`, ...)."""

    def __init__(self, message: str, code: str) -> None:
        super().__init__(message, code, None)


_BY_STATUS: dict[int, type[RelayError]] = {
    400: BadRequest,
    401: Unauthorized,
    403: Forbidden,
    404: NotFound,
    409: Conflict,
    502: Unavailable,
    503: Unavailable,
    504: Unavailable,
}
_BY_CODE: dict[str, type[RelayError]] = {
    "cancel_unsupported": CancelUnsupported,
    "already_final": AlreadyFinal,
}


def error_from_answer(status_code: int, body: bytes) -> RelayError:
    """The error for an error answer: relay's `{"error": {"code", "message"}}`, or a proxy's page of text."""
    code, message = _code_and_message(body)
    code = code or f"http_{status_code}"
    cls = _BY_CODE.get(code) or _BY_STATUS.get(status_code, RelayError)
    return cls(message or f"HTTP {status_code}", code, status_code)


def _code_and_message(body: bytes) -> tuple[str | None, str | None]:
    try:
        doc: Any = json.loads(body)
    except ValueError:
        text = body.decode("utf-8", "replace").strip()
        return None, text[:500] or None
    error = doc.get("error") if isinstance(doc, dict) else None
    if not isinstance(error, dict):
        return None, None
    code, message = error.get("code"), error.get("message")
    return (code if isinstance(code, str) else None), (message if isinstance(message, str) else None)
