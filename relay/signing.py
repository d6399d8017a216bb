"""Standard Webhooks signatures: pure functions, constant-time compares, timestamp tolerance."""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets
from collections.abc import Sequence

from relay.errors import ConfigError, Unauthorized

__all__ = [
    "SECRET_PREFIX",
    "check_timestamp",
    "decode_secret",
    "new_secret",
    "sign",
    "verify",
]

SECRET_PREFIX = "whsec_"
_MAX_TIMESTAMP_DIGITS = 19  # int64 seconds


def new_secret() -> str:
    """A fresh `whsec_` secret of 32 random bytes."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(32)).decode()


def decode_secret(secret: str) -> bytes:
    """The HMAC key of a `whsec_` secret (prefix and padding optional, as in the reference library)."""
    raw = secret.removeprefix(SECRET_PREFIX)
    try:
        key = base64.b64decode(raw + "=" * (-len(raw) % 4), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ConfigError(f"secret is not base64 after {SECRET_PREFIX!r}") from exc
    if not key:
        raise ConfigError("secret is empty")
    return key


def sign(key: bytes, msg_id: str, timestamp: int, body: bytes) -> str:
    """The `v1,<base64>` signature of `msg_id.timestamp.body`."""
    return "v1," + base64.b64encode(_digest(key, msg_id, str(timestamp), body)).decode()


def _digest(key: bytes, msg_id: str, timestamp: str, body: bytes) -> bytes:
    # Not the one-shot hmac.digest: it always releases the GIL, and on the event loop that hands the GIL to
    # the SQLite writer thread for every callback; an HMAC object releases it only for bodies over 2 KiB.
    return hmac.new(key, b"%s.%s.%s" % (msg_id.encode(), timestamp.encode(), body), hashlib.sha256).digest()


def check_timestamp(timestamp: str | None, now: float, tolerance_s: float) -> int:
    """Parse an integer unix-seconds header and refuse it outside `now ± tolerance_s`."""
    if not timestamp:
        raise Unauthorized("the timestamp header is missing", "missing_timestamp")
    # The length bound keeps int() and the float comparison below from raising on a header of many digits.
    if not timestamp.isascii() or not timestamp.isdigit() or len(timestamp) > _MAX_TIMESTAMP_DIGITS:
        raise Unauthorized("the timestamp header is not integer unix seconds", "bad_timestamp")
    value = int(timestamp)
    if abs(now - value) > tolerance_s:
        raise Unauthorized(f"the timestamp is outside the tolerance of {tolerance_s:g} s", "stale_timestamp")
    return value


def verify(
    keys: Sequence[bytes],
    msg_id: str | None,
    timestamp: str | None,
    signature_header: str | None,
    body: bytes,
    now: float,
    tolerance_s: float,
) -> None:
    """Accept when any `v1,` entry of the header matches any key; entries of other versions are skipped."""
    if not msg_id:
        raise Unauthorized("the webhook-id header is missing", "missing_id")
    if not signature_header:
        raise Unauthorized("the webhook-signature header is missing", "missing_signature")
    check_timestamp(timestamp, now, tolerance_s)
    assert timestamp is not None
    candidates = [entry[3:].encode() for entry in signature_header.split(" ") if entry.startswith("v1,")]
    if not candidates:
        raise Unauthorized("no v1 signature in the webhook-signature header", "bad_signature")
    for key in keys:
        expected = base64.b64encode(_digest(key, msg_id, timestamp, body))
        # Compare against every candidate, so the time taken does not depend on where a match is.
        matched = False
        for candidate in candidates:
            matched |= hmac.compare_digest(expected, candidate)
        if matched:
            return
    raise Unauthorized("no signature matches the body with the source's secret", "bad_signature")
