"""Job ID, status, result and error found in any JSON body by JSON pointers (the generic kinds)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from jsonpointer import JsonPointer, JsonPointerException

from relay.errors import ConfigError
from relay.models import Callback, Status
from relay.providers.base import (
    COMMON_STATUS_WORDS,
    SourceConfig,
    derived_delivery_id,
    error_text,
    job_id_of,
    load_object,
    status_of,
)

__all__ = ["POINTER_OPTIONS", "BodyFields", "Pointer"]

# The config keys of every kind that reads its fields by pointer, with their defaults.
POINTER_OPTIONS: Mapping[str, Any] = {
    "job_id_pointer": "/id",
    "status_pointer": "/status",
    "result_pointer": "",
    "error_pointer": "/error",
    "status_map": {},
}


_MISSING: Any = None  # what a pointer to nothing resolves to, as `JsonPointer.resolve(doc, None)` does


class Pointer:
    """An RFC 6901 pointer parsed once at start (by `jsonpointer`), resolved by plain lookups per callback.

    `JsonPointer.resolve` rebuilds its path and walks through generic checks on every call; on the hot path
    a tuple of tokens is enough. Semantics are the library's: a missing member, an index past the end, `-`
    or a non-container on the way all resolve to nothing.
    """

    __slots__ = ("_tokens", "path")

    def __init__(self, text: str) -> None:
        pointer = JsonPointer(text)
        self.path = pointer.path or "/"  # how a 400 names where it looked
        self._tokens: tuple[str, ...] = tuple(pointer.parts)

    def resolve(self, doc: Any) -> Any:
        for token in self._tokens:
            if isinstance(doc, dict):
                doc = doc.get(token, _MISSING)
            elif isinstance(doc, list) and token.isdigit() and (token == "0" or token[0] != "0"):
                index = int(token)
                doc = doc[index] if index < len(doc) else _MISSING
            else:
                return _MISSING
        return doc


def _pointer(source: SourceConfig, key: str) -> Pointer:
    try:
        return Pointer(source.options[key])
    except (JsonPointerException, TypeError) as exc:
        raise ConfigError(f"sources.{source.name}.{key}: not a JSON pointer ({exc})") from None


def _status_words(source: SourceConfig) -> dict[str, Status]:
    words = dict(COMMON_STATUS_WORDS)
    extra = source.options.get("status_map") or {}
    if not isinstance(extra, dict):
        raise ConfigError(f"sources.{source.name}.status_map: must be a table of word = status")
    # `pending` is relay's own "nothing heard yet": a provider's word cannot mean that.
    allowed = {s.value: s for s in Status if s != Status.PENDING}
    for word, status in extra.items():
        if status not in allowed:
            raise ConfigError(
                f"sources.{source.name}.status_map.{word}: {status!r} is not one of {', '.join(allowed)}"
            )
        words[str(word).lower()] = allowed[status]
    return words


class BodyFields:
    """The pointers and status words of one source, checked once at start."""

    def __init__(self, source: SourceConfig) -> None:
        self._job_id = _pointer(source, "job_id_pointer")
        self._status = _pointer(source, "status_pointer")
        self._result = _pointer(source, "result_pointer")
        self._error = _pointer(source, "error_pointer")
        self._words = _status_words(source)

    def callback(self, body: bytes, delivery_id: str | None = None) -> Callback:
        """The body as a Callback; a `BadRequest` naming the pointer when a field is missing or unknown.

        Without a delivery ID from the sender, one is derived from the job and the provider's status word.
        """
        doc = load_object(body)
        job_id = job_id_of(self._job_id.resolve(doc), self._job_id.path)
        word = self._status.resolve(doc)
        status = status_of(word, self._words, self._status.path)
        return Callback(
            job_id=job_id,
            status=status,
            delivery_id=delivery_id or derived_delivery_id(job_id, str(word).lower()),
            body=body,
            result=self._result.resolve(doc),
            error=error_text(self._error.resolve(doc)),
        )
