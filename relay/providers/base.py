"""The provider interface: each kind verifies a callback and reads its job ID and status."""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar
from urllib.parse import quote

import httpx
import orjson

from relay.errors import BadRequest, ConfigError, Unauthorized
from relay.jsoncodec import check_depth, too_deep
from relay.models import Callback, Job, Status
from relay.providers.api import ProviderApi, host_of
from relay.providers.cancel import CancelAnswer, unsupported

__all__ = [
    "COMMON_STATUS_WORDS",
    "Provider",
    "SourceConfig",
    "UnsignedProvider",
    "derived_delivery_id",
    "error_text",
    "header",
    "job_id_of",
    "load_object",
    "reconciled",
    "status_of",
]

log = logging.getLogger("relay.providers")

# Words providers use for a job's state, lower-cased; a source's `status_map` extends this.
COMMON_STATUS_WORDS: Mapping[str, Status] = {
    **dict.fromkeys(
        ("succeeded", "success", "successful", "completed", "complete", "done", "ok", "finished"),
        Status.SUCCEEDED,
    ),
    **dict.fromkeys(("failed", "failure", "error", "errored"), Status.FAILED),
    **dict.fromkeys(("canceled", "cancelled", "aborted"), Status.CANCELED),
    **dict.fromkeys(
        (
            "processing",
            "running",
            "in_progress",
            "started",
            "starting",
            "queued",
            "pending",
            "in_queue",
            "accepted",
            "submitted",
            "created",
        ),
        Status.RUNNING,
    ),
}

MAX_JOB_ID_LENGTH = 256


@dataclass(frozen=True, slots=True)
class SourceConfig:
    """One `[sources.NAME]` table, validated."""

    name: str
    kind: str
    secrets: tuple[str, ...] = field(default=(), repr=False)
    timeout_s: float = 900.0
    tolerance_s: float = 300.0
    options: Mapping[str, Any] = field(default_factory=dict)
    # Deadlines and reconciliation: a still-running answer extends a deadline up to created + max_deadline_s;
    # reconcile_after_s asks the provider once, early, when no final callback has come by then.
    max_deadline_s: float = 86_400.0
    reconcile_after_s: float | None = None
    api_token: str | None = field(default=None, repr=False)
    api_base_url: str | None = None
    # Archiving (relay/archive_settings.py): copy a final result's files on these hosts into the store.
    archive: bool = False
    archive_hosts: tuple[str, ...] = ()

    @property
    def hook_token_subject(self) -> str:
        """What the URL token of an unsigned source signs: its name, with `token_version` when one is set.

        Bumping `token_version` gives the source a new URL and refuses every URL handed out before.
        """
        version = self.options.get("token_version")
        return self.name if version is None else f"{self.name}#{version}"


class Provider:
    """Base of every provider kind; a subclass is one file under `relay/providers/`."""

    kind: ClassVar[str]
    # Kind-specific config keys and their defaults (None: optional with no default).
    options: ClassVar[Mapping[str, Any]] = {}
    # Unsigned providers are authenticated by a signed token in the URL instead.
    signed: ClassVar[bool] = True
    # The provider's own API (its status endpoint), replaced by the source's `api_base_url`; None: none.
    api_base: ClassVar[str | None] = None
    # How the API token is presented: `authorization: <api_auth> <token>`.
    api_auth: ClassVar[str] = "Bearer"

    def __init__(self, source: SourceConfig) -> None:
        self.source = source
        # Callbacks taken but not fully understood (e.g. an event type this version does not know), by reason.
        self.warnings: Counter[str] = Counter()
        self.api = self._own_api()

    def _own_api(self) -> ProviderApi | None:
        """The API the sweeper asks: only where the kind has one and the source has an API token."""
        if self.api_base is None or not self.source.api_token:
            return None
        base = self.source.api_base_url or self.api_base
        try:
            return ProviderApi(base, self.source.api_token, self.api_auth)
        except ValueError as exc:
            raise ConfigError(f"sources.{self.source.name}.api_base_url: {exc}") from None

    async def verify(self, headers: Mapping[str, str], body: bytes, now: float) -> None:
        """Raise `Unauthorized` unless the callback is authentic and fresh."""
        raise NotImplementedError

    def parse(self, headers: Mapping[str, str], body: bytes) -> Callback:
        """Read the job ID, status, result and delivery ID; raise `BadRequest` on a malformed body."""
        raise NotImplementedError

    async def fetch_status(self, job: Job, client: httpx.AsyncClient) -> Callback | None:
        """Ask the provider's status endpoint where `job` is (the sweeper's reconcile).

        Answer a Callback with `via="reconcile"` (non-final: still running), or None when this kind has no
        status endpoint or no API token is configured. Errors propagate; the sweeper treats them as no answer.
        """
        return None

    async def cancel(self, job: Job, client: httpx.AsyncClient) -> CancelAnswer:
        """Ask the provider to cancel `job` (relay/providers/cancel.py): its answer, or 409
        `cancel_unsupported` where the kind has no cancel API, or 502 `provider_error`."""
        raise unsupported(f"source {self.source.name!r} is a {self.kind} source: it has no cancel API")

    def cancel_api(self) -> ProviderApi:
        """The API a cancel request goes to; 409 `cancel_unsupported` naming the key when no token is set."""
        if self.api is None:
            name = self.source.name
            raise unsupported(f"source {name!r} has no API token: set sources.{name}.api_token to cancel")
        return self.api

    def metadata_url(self, job: Job, key: str) -> str | None:
        """`job.metadata[key]` when it is a URL on the provider's API; one elsewhere is logged, not used."""
        url = job.metadata.get(key)
        if not url or self.api is None:
            return None
        if self.api.on_api(url):
            return str(url)
        self.warn(
            "foreign_status_url",
            f"job {job.job_id}: metadata.{key} names {host_of(url)}, not the provider's API "
            f"({self.api.origin}); not followed",
        )
        return None

    def warn(self, reason: str, detail: str) -> None:
        """Count and log a callback that was taken but not fully understood."""
        self.warnings[reason] += 1
        log.warning("source %s: %s", self.source.name, detail)

    def required_secrets(self) -> tuple[str, ...]:
        """The source's secrets; a `ConfigError` naming the key when there are none."""
        if not self.source.secrets:
            raise ConfigError(f"sources.{self.source.name}.secret: a {self.kind} source needs a secret")
        return self.source.secrets


class UnsignedProvider(Provider):
    """A provider that signs nothing: `POST /hooks/{source}/{token}`, the token signed with `secret_key`."""

    signed = False
    options: ClassVar[Mapping[str, Any]] = {"token_version": None}

    def __init__(self, source: SourceConfig) -> None:
        super().__init__(source)
        version = source.options.get("token_version")
        if version is not None and (isinstance(version, bool) or not isinstance(version, int | str)):
            raise ConfigError(f"sources.{source.name}.token_version: expected a string or an integer")

    async def verify(self, headers: Mapping[str, str], body: bytes, now: float) -> None:
        """Nothing to check in the request itself: the URL token was checked before."""


def header(headers: Mapping[str, str], name: str, code: str = "missing_header") -> str:
    """A required header (`name` lower-case), or a 401 naming it."""
    value = headers.get(name)
    if not value:
        raise Unauthorized(f"the {name} header is missing", code)
    return value


def reconciled(
    job_id: str, status: Status, body: bytes, result: Any = None, error: str | None = None
) -> Callback:
    """The provider's own status answer, stored like a callback with `via: reconcile`."""
    return Callback(
        job_id=job_id,
        status=status,
        delivery_id=derived_delivery_id(job_id, f"reconcile-{status.value}"),
        body=body,
        result=result,
        error=error,
        via="reconcile",
    )


def derived_delivery_id(job_id: str, status_word: str) -> str:
    """A dedupe key for providers that send no delivery ID: a redelivery of the same state dedupes.

    The job ID is percent-encoded so that no two (job, status) pairs give the same key.
    """
    return f"{quote(job_id, safe='')}:{status_word}"


def load_object(body: bytes) -> dict[str, Any]:
    """The body as a JSON object, or a 400 that says what is wrong."""
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        if "depth limit" in str(exc):  # orjson stops reading at its own limit, far past ours
            raise too_deep() from None
        raise BadRequest(f"the body is not valid JSON: {exc}", "malformed_json") from None
    if not isinstance(doc, dict):
        raise BadRequest("the body is JSON but not an object", "malformed_json")
    check_depth(doc, body)
    return doc


def job_id_of(value: Any, where: str) -> str:
    """A job ID from a body field: a non-empty string or an integer."""
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise BadRequest(f"no job ID at {where} in the body", "missing_job_id")
    job_id = str(value)
    if not job_id or len(job_id) > MAX_JOB_ID_LENGTH:
        raise BadRequest(f"the job ID at {where} is empty or longer than {MAX_JOB_ID_LENGTH}", "bad_job_id")
    if "\x00" in job_id:  # PostgreSQL's text holds no NUL, so no backend takes one
        raise BadRequest(f"the job ID at {where} holds a NUL character", "bad_job_id")
    return job_id


def status_of(value: Any, words: Mapping[str, Status], where: str) -> Status:
    """Map a provider's status word to a relay status; an unknown word is a 400 so the sender retries."""
    if not isinstance(value, str):
        raise BadRequest(f"no status at {where} in the body", "missing_status")
    status = words.get(value.lower())
    if status is None:
        raise BadRequest(
            f"unknown status {value[:64]!r} at {where}; map it with the source's status_map", "unknown_status"
        )
    return status


def error_text(value: Any) -> str | None:
    """A provider's error field as text: strings as they are, anything else as JSON. A NUL becomes U+FFFD:
    no backend stores one in text (PostgreSQL refuses it), and the message is kept rather than refused."""
    if value is None or value == "" or value == []:
        return None
    text = value if isinstance(value, str) else orjson.dumps(value).decode()
    return text.replace("\x00", "\ufffd") if "\x00" in text else text
