"""`standard-webhooks`: any sender that signs the Standard Webhooks way; fields found by JSON pointer."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from jsonpointer import JsonPointer, JsonPointerException

from relay import signing
from relay.errors import ConfigError
from relay.models import Callback, Status
from relay.providers.base import (
    COMMON_STATUS_WORDS,
    Provider,
    SourceConfig,
    job_id_of,
    load_object,
    status_of,
)

__all__ = ["StandardWebhooks", "StandardWebhooksSigned"]


def _pointer(source: SourceConfig, key: str) -> JsonPointer:
    try:
        return JsonPointer(source.options[key])
    except (JsonPointerException, TypeError) as exc:
        raise ConfigError(f"sources.{source.name}.{key}: not a JSON pointer ({exc})") from None


def _status_words(source: SourceConfig) -> dict[str, Status]:
    words = dict(COMMON_STATUS_WORDS)
    extra = source.options.get("status_map") or {}
    if not isinstance(extra, dict):
        raise ConfigError(f"sources.{source.name}.status_map: must be a table of word = status")
    for word, status in extra.items():
        try:
            words[str(word).lower()] = Status(status)
        except ValueError:
            allowed = ", ".join(s.value for s in Status if s != Status.PENDING)
            raise ConfigError(
                f"sources.{source.name}.status_map.{word}: {status!r} is not one of {allowed}"
            ) from None
    return words


class StandardWebhooksSigned(Provider):
    """Verification shared by every provider that signs the Standard Webhooks way."""

    def __init__(self, source: SourceConfig) -> None:
        super().__init__(source)
        if not source.secrets:
            raise ConfigError(f"sources.{source.name}.secret: a {self.kind} source needs a whsec_ secret")
        try:
            self._keys = [signing.decode_secret(secret) for secret in source.secrets]
        except ConfigError as exc:
            raise ConfigError(f"sources.{source.name}.secret: {exc}") from None

    def verify(self, headers: Mapping[str, str], body: bytes, now: float) -> None:
        signing.verify(
            self._keys,
            headers.get("webhook-id"),
            headers.get("webhook-timestamp"),
            headers.get("webhook-signature"),
            body,
            now,
            self.source.tolerance_s,
        )


class StandardWebhooks(StandardWebhooksSigned):
    kind = "standard-webhooks"
    options: ClassVar[Mapping[str, Any]] = {
        "job_id_pointer": "/id",
        "status_pointer": "/status",
        "result_pointer": "",
        "error_pointer": "/error",
        "status_map": {},
    }

    def __init__(self, source: SourceConfig) -> None:
        super().__init__(source)
        self._job_id = _pointer(source, "job_id_pointer")
        self._status = _pointer(source, "status_pointer")
        self._result = _pointer(source, "result_pointer")
        self._error = _pointer(source, "error_pointer")
        self._words = _status_words(source)

    def parse(self, headers: Mapping[str, str], body: bytes) -> Callback:
        doc = load_object(body)
        error = self._error.resolve(doc, None)
        return Callback(
            job_id=job_id_of(self._job_id.resolve(doc, None), self._job_id.path or "/"),
            status=status_of(self._status.resolve(doc, None), self._words, self._status.path or "/"),
            delivery_id=headers["webhook-id"],
            body=body,
            result=self._result.resolve(doc, None),
            error=None if error is None else str(error),
        )
