"""For subscribers: check that a delivery came from relay (Standard Webhooks), before trusting its body."""

from __future__ import annotations

import json
import time
from collections.abc import Mapping, Sequence
from typing import Any

from relay import signing
from relay.client.errors import InvalidSignature
from relay.errors import ConfigError, Unauthorized

__all__ = ["DEFAULT_TOLERANCE_S", "verify_delivery"]

DEFAULT_TOLERANCE_S = 300.0  # the Standard Webhooks reference libraries' window, both ways


def verify_delivery(
    secret: str | Sequence[str],
    headers: Mapping[str, str],
    body: bytes | str,
    *,
    tolerance_s: float = DEFAULT_TOLERANCE_S,
    now: float | None = None,
) -> dict[str, Any]:
    """The delivery's payload (`{"id", "type", "timestamp", "data"}`) once its `webhook-signature` matches
    `body` with the secret (or any of several, while rotating) and its `webhook-timestamp` is within
    `tolerance_s` of `now`; raises `InvalidSignature` otherwise. Compares in constant time."""
    secrets = [secret] if isinstance(secret, str) else list(secret)
    if not secrets:
        raise ValueError("verify_delivery needs at least one secret")
    try:
        keys = [signing.decode_secret(s) for s in secrets]
    except ConfigError as exc:
        raise ValueError(f"not a Standard Webhooks secret (whsec_...): {exc}") from None
    found = {name.lower(): value for name, value in headers.items()}
    raw = body.encode() if isinstance(body, str) else bytes(body)
    try:
        signing.verify(
            keys,
            found.get("webhook-id"),
            found.get("webhook-timestamp"),
            found.get("webhook-signature"),
            raw,
            time.time() if now is None else now,
            tolerance_s,
        )
    except Unauthorized as exc:
        message = (
            "no signature matches the body with the secret(s)" if exc.code == "bad_signature" else exc.message
        )
        raise InvalidSignature(message, exc.code) from None
    try:
        payload = json.loads(raw)
    except ValueError:
        payload = None
    if not isinstance(payload, dict):
        raise InvalidSignature("the signed body is not a JSON object", "malformed_json")
    return payload
