"""One small hierarchy of domain errors, each carrying its HTTP status and error code."""

from __future__ import annotations

__all__ = [
    "BadGateway",
    "BadRequest",
    "ConfigError",
    "Conflict",
    "Forbidden",
    "HeadersTooLarge",
    "InternalError",
    "NotFound",
    "PayloadTooLarge",
    "RelayError",
    "RequestTimeout",
    "ServiceUnavailable",
    "Unauthorized",
]


class RelayError(Exception):
    """An error answered as `{"error": {"code", "message"}}` with `status`."""

    status = 500
    default_code = "internal"

    def __init__(self, message: str, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.code = code or self.default_code


class BadRequest(RelayError):
    status = 400
    default_code = "bad_request"


class Unauthorized(RelayError):
    status = 401
    default_code = "unauthorized"


class Forbidden(RelayError):
    status = 403
    default_code = "forbidden"


class NotFound(RelayError):
    status = 404
    default_code = "not_found"


class Conflict(RelayError):
    status = 409
    default_code = "conflict"


class PayloadTooLarge(RelayError):
    status = 413
    default_code = "body_too_large"


class RequestTimeout(RelayError):
    status = 408
    default_code = "body_timeout"


class HeadersTooLarge(RelayError):
    status = 431
    default_code = "headers_too_large"


class InternalError(RelayError):
    """An unexpected failure, answered in the same shape as every other error."""


class BadGateway(RelayError):
    """A provider's API refused or did not answer what relay asked of it on a client's behalf."""

    status = 502
    default_code = "provider_error"


class ServiceUnavailable(RelayError):
    status = 503
    default_code = "unavailable"


class ConfigError(Exception):
    """The configuration cannot be used; the message names the key."""
