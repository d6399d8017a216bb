"""`standard-webhooks`: any sender that signs the Standard Webhooks way; fields found by JSON pointer.

Both schemes of the spec: `v1,` HMAC-SHA256 with `whsec_` secrets and `v1a,` ed25519 with `whpk_` public keys.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from relay import signing
from relay.errors import ConfigError, Unauthorized
from relay.models import Callback
from relay.providers.base import Provider, SourceConfig, header
from relay.providers.fields import POINTER_OPTIONS, BodyFields

__all__ = ["PUBLIC_KEY_PREFIX", "StandardWebhooks", "StandardWebhooksSigned", "decode_public_key"]

PUBLIC_KEY_PREFIX = "whpk_"


def _b64decode(text: str) -> bytes:
    return base64.b64decode(text + "=" * (-len(text) % 4), validate=True)


def decode_public_key(key: str) -> Ed25519PublicKey:
    """An ed25519 public key from `whpk_<base64 of the 32 raw bytes>` (prefix and padding optional)."""
    try:
        raw = _b64decode(key.removeprefix(PUBLIC_KEY_PREFIX))
        return Ed25519PublicKey.from_public_bytes(raw)
    except (binascii.Error, ValueError):
        raise ConfigError(f"not a {PUBLIC_KEY_PREFIX} ed25519 public key (base64 of 32 bytes)") from None


def _strings(value: Any) -> list[str]:
    """A config value that may be one string or a list of them."""
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list) or not all(isinstance(item, str) and item for item in items):
        raise ConfigError("expected a string or a list of strings")
    return items


def _ed25519_matches(keys: Sequence[Ed25519PublicKey], entries: Sequence[str], content: bytes) -> bool:
    for entry in entries:
        try:
            signature = _b64decode(entry)
        except (binascii.Error, ValueError):
            continue
        for key in keys:
            try:
                key.verify(signature, content)
            except InvalidSignature:
                continue
            return True
    return False


class StandardWebhooksSigned(Provider):
    """Verification shared by every provider that signs the Standard Webhooks way."""

    def __init__(self, source: SourceConfig) -> None:
        super().__init__(source)
        where = f"sources.{source.name}"
        public = source.options.get("public_key")
        try:
            self._public_keys = [decode_public_key(k) for k in _strings(public)] if public else []
        except ConfigError as exc:
            raise ConfigError(f"{where}.public_key: {exc}") from None
        if not source.secrets and not self._public_keys:
            raise ConfigError(f"{where}.secret: a {self.kind} source needs a whsec_ secret")
        try:
            self._keys = [signing.decode_secret(secret) for secret in source.secrets]
        except ConfigError as exc:
            raise ConfigError(f"{where}.secret: {exc}") from None

    async def verify(self, headers: Mapping[str, str], body: bytes, now: float) -> None:
        """Any `v1,` entry matching a secret, or any `v1a,` entry verifying with a public key, accepts."""
        msg_id = headers.get("webhook-id")
        timestamp = headers.get("webhook-timestamp")
        signature = headers.get("webhook-signature")
        if not self._public_keys:
            signing.verify(self._keys, msg_id, timestamp, signature, body, now, self.source.tolerance_s)
            return
        msg_id = header(headers, "webhook-id", "missing_id")
        signature = header(headers, "webhook-signature", "missing_signature")
        signing.check_timestamp(timestamp, now, self.source.tolerance_s)
        entries = signature.split(" ")
        if self._keys and any(entry.startswith("v1,") for entry in entries):
            try:
                signing.verify(self._keys, msg_id, timestamp, signature, body, now, self.source.tolerance_s)
                return
            except Unauthorized:
                pass  # an asymmetric entry may still match
        asymmetric = [entry[4:] for entry in entries if entry.startswith("v1a,")]
        content = b"%s.%s.%s" % (msg_id.encode(), str(timestamp).encode(), body)
        if not _ed25519_matches(self._public_keys, asymmetric, content):
            raise Unauthorized(
                "no signature matches the body with the source's secret or public key", "bad_signature"
            )


class StandardWebhooks(StandardWebhooksSigned):
    kind = "standard-webhooks"
    options: ClassVar[Mapping[str, Any]] = {**POINTER_OPTIONS, "public_key": None}

    def __init__(self, source: SourceConfig) -> None:
        super().__init__(source)
        self._fields = BodyFields(source)

    def parse(self, headers: Mapping[str, str], body: bytes) -> Callback:
        return self._fields.callback(body, headers["webhook-id"])
