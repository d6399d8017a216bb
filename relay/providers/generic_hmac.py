"""`hmac`: an HMAC of the body (SHA-256 or SHA-1) in a header of your choice, as GitHub and many others sign.

The header may hold several signatures (comma- or space-separated, each with the optional `prefix`, e.g.
`sha256=`), hex or base64; any one matching any secret accepts. With `timestamp_header` the timestamp must be
within `tolerance_s` and is signed with the body (`signed_payload`, by default `{timestamp}.{body}`).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

from relay import signing
from relay.errors import ConfigError, Unauthorized
from relay.models import Callback
from relay.providers.base import Provider, SourceConfig, header
from relay.providers.fields import POINTER_OPTIONS, BodyFields

__all__ = ["Hmac", "hmac_matches", "signature_candidates"]

ALGORITHMS = {"sha256": hashlib.sha256, "sha1": hashlib.sha1}
ENCODINGS = ("hex", "base64")
_SEPARATORS = re.compile(r"[,\s]+")


def signature_candidates(value: str, prefix: str, encoding: str) -> list[bytes]:
    """The decoded signatures in a header: entries with `prefix`; others and undecodable ones are skipped."""
    found = []
    for entry in _SEPARATORS.split(value.strip()):
        if not entry.startswith(prefix):
            continue
        text = entry[len(prefix) :]
        try:
            found.append(bytes.fromhex(text) if encoding == "hex" else base64.b64decode(text, validate=True))
        except (ValueError, binascii.Error):
            continue
    return [candidate for candidate in found if candidate]


def hmac_matches(keys: Sequence[bytes], candidates: Sequence[bytes], content: bytes, algorithm: str) -> bool:
    """Whether any candidate is the HMAC of `content` under any key; every pair compared in constant time."""
    matched = False
    for key in keys:
        expected = hmac.new(key, content, ALGORITHMS[algorithm]).digest()
        for candidate in candidates:
            matched |= hmac.compare_digest(expected, candidate)
    return matched


def _choice(source: SourceConfig, key: str, allowed: Sequence[str]) -> str:
    value = source.options.get(key)
    if value not in allowed:
        raise ConfigError(f"sources.{source.name}.{key}: expected one of {', '.join(allowed)}, got {value!r}")
    return str(value)


def _text(source: SourceConfig, key: str, required: bool = False) -> str | None:
    value = source.options.get(key)
    if value is None and not required:
        return None
    if not isinstance(value, str) or (required and not value):
        raise ConfigError(f"sources.{source.name}.{key}: expected a string, got {value!r}")
    return value


class Hmac(Provider):
    kind = "hmac"
    options: ClassVar[Mapping[str, Any]] = {
        "header": None,
        "prefix": "",
        "algorithm": "sha256",
        "encoding": "hex",
        "timestamp_header": None,
        "signed_payload": None,
        "id_header": None,
        **POINTER_OPTIONS,
    }

    def __init__(self, source: SourceConfig) -> None:
        super().__init__(source)
        self._keys = [secret.encode() for secret in self.required_secrets()]
        self._header = str(_text(source, "header", required=True)).lower()
        self._prefix = _text(source, "prefix") or ""
        self._algorithm = _choice(source, "algorithm", tuple(ALGORITHMS))
        self._encoding = _choice(source, "encoding", ENCODINGS)
        self._timestamp_header = (_text(source, "timestamp_header") or "").lower() or None
        self._id_header = (_text(source, "id_header") or "").lower() or None
        default = "{timestamp}.{body}" if self._timestamp_header else "{body}"
        template = _text(source, "signed_payload") or default
        where = f"sources.{source.name}.signed_payload"
        if template.count("{body}") != 1:
            raise ConfigError(f"{where}: must hold {{body}} once, e.g. '{{timestamp}}.{{body}}'")
        if self._timestamp_header and "{timestamp}" not in template:
            raise ConfigError(f"{where}: must hold {{timestamp}}, or the timestamp is not signed")
        self._before, self._after = template.split("{body}")
        self._fields = BodyFields(source)

    async def verify(self, headers: Mapping[str, str], body: bytes, now: float) -> None:
        signature = header(headers, self._header, "missing_signature")
        timestamp = ""
        if self._timestamp_header:
            timestamp = headers.get(self._timestamp_header) or ""
            signing.check_timestamp(timestamp or None, now, self.source.tolerance_s)
        candidates = signature_candidates(signature, self._prefix, self._encoding)
        if not candidates:
            raise Unauthorized(
                f"no {self._prefix}{self._encoding} signature in the {self._header} header", "bad_signature"
            )
        content = b"%s%s%s" % (
            self._before.replace("{timestamp}", timestamp).encode(),
            body,
            self._after.replace("{timestamp}", timestamp).encode(),
        )
        if not hmac_matches(self._keys, candidates, content, self._algorithm):
            raise Unauthorized("no signature matches the body with the source's secret", "bad_signature")

    def parse(self, headers: Mapping[str, str], body: bytes) -> Callback:
        return self._fields.callback(body, headers.get(self._id_header) if self._id_header else None)
