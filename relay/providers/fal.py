"""`fal`: ed25519 signatures over request ID, user ID, timestamp and the body's SHA-256, keys from a JWKS.

fal signs `request_id \\n user_id \\n timestamp \\n sha256-hex(body)` (from the `X-Fal-Webhook-*` headers)
with a key published in its JWKS; the signature carries no key ID, so every published key is tried. The keys
are fetched on first use, kept 24 h, and fetched again (at most once a minute) when none of them verifies,
which is how a rotated key is picked up.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
from collections.abc import Mapping
from typing import Any, ClassVar

import httpx
import orjson
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from relay import signing
from relay.errors import ConfigError, RelayError, ServiceUnavailable, Unauthorized
from relay.models import Callback, Job, Status
from relay.providers.api import ProviderApi, answer_json
from relay.providers.base import (
    Provider,
    SourceConfig,
    derived_delivery_id,
    error_text,
    header,
    job_id_of,
    load_object,
    reconciled,
    status_of,
)
from relay.providers.cancel import (
    CancelAnswer,
    CancelOutcome,
    answer_object,
    cancel_answer,
    refused,
    send_cancel,
    unsupported,
)

__all__ = ["DEFAULT_JWKS_URL", "Fal", "JwksKeys"]

DEFAULT_JWKS_URL = "https://rest.alpha.fal.ai/.well-known/jwks.json"
QUEUE_API = "https://queue.fal.run"
KEYS_TTL_S = 24 * 3600.0
REFETCH_INTERVAL_S = 60.0
FETCH_TIMEOUT_S = 10.0

WEBHOOK_STATUSES: Mapping[str, Status] = {"ok": Status.SUCCEEDED, "error": Status.FAILED}
# The words of fal's answer to a cancel request (`OK`: removed from the queue, it never runs; `NOT_FOUND` is
# no answer about the job: a 502).
CANCEL_WORDS: Mapping[str, CancelOutcome] = {
    "OK": CancelOutcome.CANCELED,
    "CANCELLATION_REQUESTED": CancelOutcome.REQUESTED,
    "ALREADY_COMPLETED": CancelOutcome.ENDED,
}


def _keys_of(jwks: Any) -> list[Ed25519PublicKey]:
    """The Ed25519 keys of a JWKS document; other key types are skipped."""
    keys = []
    entries = jwks.get("keys") if isinstance(jwks, dict) else None
    for entry in entries if isinstance(entries, list) else []:
        if not isinstance(entry, dict) or entry.get("kty") != "OKP" or entry.get("crv") != "Ed25519":
            continue
        x = entry.get("x")
        try:
            raw = base64.urlsafe_b64decode(str(x) + "=" * (-len(str(x)) % 4))
            keys.append(Ed25519PublicKey.from_public_bytes(raw))
        except (binascii.Error, ValueError):
            continue
    return keys


class JwksKeys:
    """fal's public keys: fetched lazily, cached for `ttl_s`, refetched at most every `refetch_s`."""

    def __init__(self, url: str, ttl_s: float = KEYS_TTL_S, refetch_s: float = REFETCH_INTERVAL_S) -> None:
        self.url = url
        self._ttl_s = ttl_s
        self._refetch_s = refetch_s
        self._keys: list[Ed25519PublicKey] = []
        self._fetched_at: float | None = None  # last successful fetch
        self._tried_at: float | None = None  # last attempt, successful or not
        self._lock = asyncio.Lock()
        self.fetches = 0

    async def current(self, now: float) -> list[Ed25519PublicKey]:
        """The cached keys, fetched first when there are none or they are older than the TTL."""
        if not self._fresh(now):
            await self.refresh(now)
        if not self._fresh(now):  # keys past their TTL are not trusted: fal retries while we cannot fetch
            raise ServiceUnavailable(f"fal's keys could not be fetched from {self.url}", "jwks_unavailable")
        return self._keys

    def _fresh(self, now: float) -> bool:
        return self._fetched_at is not None and now - self._fetched_at < self._ttl_s

    async def refresh(self, now: float) -> bool:
        """Fetch the keys unless a fetch was tried in the last `refetch_s`; True when new keys came."""
        async with self._lock:  # concurrent callbacks share one fetch
            if self._tried_at is not None and now - self._tried_at < self._refetch_s:
                return False
            self._tried_at = now
            self.fetches += 1
            try:
                # Fetches are rare (a day apart, a minute at the least), so a client per fetch costs nothing.
                async with httpx.AsyncClient(timeout=FETCH_TIMEOUT_S, follow_redirects=False) as client:
                    response = await client.get(self.url)
                response.raise_for_status()
                keys = _keys_of(response.json())
            except (httpx.HTTPError, httpx.InvalidURL, ValueError):
                return False  # keep what we had; the next refresh may be luckier
            if not keys:
                return False
            changed = [k.public_bytes_raw() for k in keys] != [k.public_bytes_raw() for k in self._keys]
            self._keys, self._fetched_at = keys, now
            return changed


def _verifies(keys: list[Ed25519PublicKey], signature: bytes, message: bytes) -> bool:
    for key in keys:
        try:
            key.verify(signature, message)
        except InvalidSignature:
            continue
        return True
    return False


class Fal(Provider):
    kind = "fal"
    options: ClassVar[Mapping[str, Any]] = {"jwks_url": DEFAULT_JWKS_URL}
    api_base = QUEUE_API
    api_auth = "Key"

    def __init__(self, source: SourceConfig) -> None:
        super().__init__(source)
        url = source.options.get("jwks_url")
        if not isinstance(url, str) or not url.startswith(("https://", "http://")):
            raise ConfigError(f"sources.{source.name}.jwks_url: expected an http(s) URL, got {url!r}")
        self.keys = JwksKeys(url)

    async def verify(self, headers: Mapping[str, str], body: bytes, now: float) -> None:
        request_id = header(headers, "x-fal-webhook-request-id")
        user_id = header(headers, "x-fal-webhook-user-id")
        timestamp = headers.get("x-fal-webhook-timestamp")
        signature_hex = header(headers, "x-fal-webhook-signature", "missing_signature")
        signing.check_timestamp(timestamp, now, self.source.tolerance_s)
        try:
            signature = bytes.fromhex(signature_hex)
        except ValueError:
            raise Unauthorized("the x-fal-webhook-signature header is not hex", "bad_signature") from None
        if len(signature) != 64:
            raise Unauthorized("the x-fal-webhook-signature header is not 64 bytes", "bad_signature")
        digest = hashlib.sha256(body).hexdigest()
        message = f"{request_id}\n{user_id}\n{timestamp}\n{digest}".encode()
        if _verifies(await self.keys.current(now), signature, message):
            return
        # Perhaps fal rotated its keys since we fetched them.
        if await self.keys.refresh(now) and _verifies(await self.keys.current(now), signature, message):
            return
        raise Unauthorized("no key of fal's JWKS verifies the signature over this body", "bad_signature")

    def parse(self, headers: Mapping[str, str], body: bytes) -> Callback:
        doc = load_object(body)
        job_id = job_id_of(doc.get("request_id"), "/request_id")
        status = status_of(doc.get("status"), WEBHOOK_STATUSES, "/status")
        # `payload_error`: the output could not be serialized, so `payload` is null.
        error = error_text(doc.get("error")) or error_text(doc.get("payload_error"))
        return Callback(
            job_id=job_id,
            status=status,
            delivery_id=derived_delivery_id(job_id, str(doc["status"]).upper()),
            body=body,
            result=doc.get("payload"),
            error=error,
        )

    async def fetch_status(self, job: Job, client: httpx.AsyncClient) -> Callback | None:
        """Ask fal's queue: the request's status, then its response once COMPLETED.

        The URLs are the job's `metadata.status_url` and `response_url` as fal's submit answered them (used
        only when on fal's queue API), else built from `metadata.model_id` (without a subpath such as `/dev`).
        """
        if self.api is None:
            return None
        status_url, response_url = self._queue_urls(self.api, job)
        if status_url is None:
            return None
        state = await self.api.get_json(client, status_url)
        if state.get("status") != "COMPLETED":  # IN_QUEUE, IN_PROGRESS: still running
            # The state (queue position, logs) is the job's progress.
            return reconciled(job.job_id, Status.RUNNING, orjson.dumps(state), state)
        if error_text(state.get("error")):  # COMPLETED does not mean success
            return reconciled(
                job.job_id, Status.FAILED, orjson.dumps(state), state, error_text(state.get("error"))
            )
        if response_url is None:
            return None
        response = await self.api.get(client, response_url)
        payload = _json_or_text(response)
        if response.is_success:
            return reconciled(job.job_id, Status.SUCCEEDED, response.content, payload)
        if response.status_code >= 500 or response.status_code in (401, 403, 404, 429):
            response.raise_for_status()  # fal or our token is the problem, not the job: no answer
        return reconciled(
            job.job_id, Status.FAILED, response.content, payload, f"HTTP {response.status_code}"
        )

    def _queue_urls(self, api: ProviderApi, job: Job) -> tuple[str | None, str | None]:
        """The status and response URLs: the job's own when on fal's API, else built from its model."""
        request = _request_url(api, job)
        status_url = self.metadata_url(job, "status_url") or (request and f"{request}/status")
        return status_url, self.metadata_url(job, "response_url") or request

    async def cancel(self, job: Job, client: httpx.AsyncClient) -> CancelAnswer:
        """PUT .../requests/{id}/cancel, built from the job's `metadata.model_id` (never its `cancel_url`).
        fal answers `{"status": OK | CANCELLATION_REQUESTED | ALREADY_COMPLETED | NOT_FOUND}`; the word is
        read whatever the HTTP status it comes with."""
        api = self.cancel_api()
        request = _request_url(api, job)
        if request is None:
            raise unsupported(f"fal job {job.job_id!r} has no metadata.model_id to build its cancel URL from")
        response = await send_cancel(api, client, "PUT", f"{request}/cancel")
        try:
            word = answer_object(self.kind, response).get("status")
        except RelayError:
            word = None
        outcome = CANCEL_WORDS.get(word) if isinstance(word, str) else None
        if outcome is None:
            raise refused(self.kind, job.job_id, response)
        return cancel_answer(response, outcome)


def _request_url(api: ProviderApi, job: Job) -> str | None:
    """The queue URL of the job's request, from `metadata.model_id` (fal's app, without a subpath)."""
    model_id = job.metadata.get("model_id")
    model = model_id.strip("/") if isinstance(model_id, str) else ""
    return api.url(*model.split("/"), "requests", job.job_id) if model else None


def _json_or_text(response: httpx.Response) -> Any:
    try:
        return answer_json(response)
    except ValueError:
        return response.text[:2000]
