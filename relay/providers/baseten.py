"""`baseten`: async inference results, `X-BASETEN-SIGNATURE: v1=<hex>` HMAC-SHA256 of the body.

During a secret rotation Baseten sends one `v1=` entry per active secret (`v1=new,v1=old`); the secret is used
as its UTF-8 bytes (the `whsec_` text is not base64-decoded). The result's `time` must be within
`tolerance_s`, as Baseten's docs recommend. Every result is final: a non-empty `errors` means it failed.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any, ClassVar

from relay.errors import BadRequest, Unauthorized
from relay.models import Callback, Status
from relay.providers.base import Provider, SourceConfig, error_text, header, job_id_of, load_object
from relay.providers.generic_hmac import hmac_matches, signature_candidates

__all__ = ["Baseten"]

SIGNATURE_HEADER = "x-baseten-signature"


def _unix_seconds(value: Any) -> float | None:
    """An ISO 8601 time (as in `"2024-04-30T01:01:08.883423Z"`) as unix seconds, or None."""
    if not isinstance(value, str):
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return None
    return moment.timestamp() if moment.tzinfo is not None else None


class Baseten(Provider):
    kind = "baseten"
    options: ClassVar[Mapping[str, Any]] = {}

    def __init__(self, source: SourceConfig) -> None:
        super().__init__(source)
        self._keys = [secret.encode() for secret in self.required_secrets()]

    async def verify(self, headers: Mapping[str, str], body: bytes, now: float) -> None:
        signature = header(headers, SIGNATURE_HEADER, "missing_signature")
        candidates = signature_candidates(signature, "v1=", "hex")
        if not candidates:
            raise Unauthorized(f"no v1= signature in the {SIGNATURE_HEADER} header", "bad_signature")
        if not hmac_matches(self._keys, candidates, body, "sha256"):
            raise Unauthorized("no signature matches the body with the source's secret", "bad_signature")
        # The timestamp is inside the signed body, so it is read only once the body is known to be Baseten's.
        try:
            sent = _unix_seconds(load_object(body).get("time"))
        except BadRequest:
            return  # authentic but malformed: parse() answers 400 saying so
        if sent is None:
            raise Unauthorized("the body has no ISO 8601 time with a zone at /time", "bad_timestamp")
        if abs(now - sent) > self.source.tolerance_s:
            raise Unauthorized(
                f"the time in the body is outside the tolerance of {self.source.tolerance_s:g} s",
                "stale_timestamp",
            )

    def parse(self, headers: Mapping[str, str], body: bytes) -> Callback:
        doc = load_object(body)
        job_id = job_id_of(doc.get("request_id"), "/request_id")
        error = error_text(doc.get("errors"))
        return Callback(
            job_id=job_id,
            status=Status.FAILED if error else Status.SUCCEEDED,
            # One result per request, redelivered as is: the request ID is the dedupe key.
            delivery_id=job_id,
            body=body,
            result=doc.get("data"),
            error=error,
        )
