"""Asking a provider to cancel a job: the call on its API, and what its answer says.

Each kind with a cancel API builds the request from its configured API base and the job's ID only (never a
URL from a job's metadata or an answer), sends it with the source's API token through the provider client
(relay/providers/api.py: that origin only, no redirect), and reads the answer with the same status words as
its reconcile. What relay makes of the answer is in relay/cancel.py.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import httpx

from relay.errors import BadGateway, BadRequest, Conflict
from relay.models import Status
from relay.providers.api import ProviderApi, answer_json

__all__ = [
    "CancelAnswer",
    "CancelOutcome",
    "answer_object",
    "cancel_answer",
    "outcome_of",
    "refused",
    "send_cancel",
    "unsupported",
]


class CancelOutcome(enum.StrEnum):
    """What a provider's answer to a cancel request says."""

    CANCELED = "canceled"  # the job is canceled now
    REQUESTED = "requested"  # taken; the job is still running until the provider says otherwise
    ENDED = "ended"  # too late: the job already ended another way


@dataclass(frozen=True, slots=True)
class CancelAnswer:
    """A provider's answer to a cancel request: its HTTP status, what it says, and (when canceled) the job's
    result and error as the provider's own callback would carry them."""

    status_code: int
    outcome: CancelOutcome
    body: bytes
    result: Any = None
    error: str | None = None


def unsupported(message: str) -> Conflict:
    """409 `cancel_unsupported`: relay cannot cancel this source's jobs (the message says why)."""
    return Conflict(message, "cancel_unsupported")


def outcome_of(word: Any, words: Mapping[str, Status]) -> CancelOutcome:
    """The outcome a status word in a cancel answer means, mapped as the kind's reconcile maps it; a word the
    kind does not know is taken as requested (the provider took the request; its callback will say more)."""
    status = words.get(str(word).lower()) if isinstance(word, str) else None
    if status == Status.CANCELED:
        return CancelOutcome.CANCELED
    return CancelOutcome.ENDED if status is not None and status.final else CancelOutcome.REQUESTED


def cancel_answer(
    response: httpx.Response, outcome: CancelOutcome, result: Any = None, error: str | None = None
) -> CancelAnswer:
    return CancelAnswer(response.status_code, outcome, response.content, result, error)


async def send_cancel(api: ProviderApi, client: httpx.AsyncClient, method: str, url: str) -> httpx.Response:
    """Send the cancel request; no answer (refused connection, timeout, a URL off the API) is a 502 that
    names the API's host only (a URL may carry what is not the client's to see)."""
    try:
        return await api.send(client, method, url)
    except httpx.HTTPError as exc:
        why = type(exc).__name__
        raise BadGateway(
            f"the provider's API at {api.origin.host} did not answer the cancel request ({why})"
        ) from None


def refused(kind: str, job_id: str, response: httpx.Response) -> BadGateway:
    """502 for an answer that is not a success: its HTTP status only, since a provider's error text may repeat
    part of the credential (OpenAI's 401 does)."""
    return BadGateway(f"{kind} answered HTTP {response.status_code} to the cancel request for job {job_id!r}")


def answer_object(kind: str, response: httpx.Response) -> dict[str, Any]:
    """The answer's JSON object; anything else (not JSON, nested past the bound, not an object) is a 502."""
    try:
        doc = answer_json(response)
    except (ValueError, BadRequest):
        doc = None
    if not isinstance(doc, dict):
        raise BadGateway(f"{kind} answered the cancel request with no JSON object ({response.status_code})")
    return doc
