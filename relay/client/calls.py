"""The HTTP calls of relay's API as plain values, and the parsing of their answers: what the sync and the
async client share, so each of them only sends a `Call` and hands the answer back here."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar
from urllib.parse import quote

import httpx

from relay import __version__
from relay.client.errors import RelayConnectionError, RelayError, error_from_answer
from relay.client.models import Delivery, Job

__all__ = [
    "DEFAULT_URL",
    "Call",
    "Page",
    "answer",
    "cancel",
    "connection_error",
    "create_subscription",
    "delete_subscription",
    "deliveries_page",
    "get_job",
    "get_source",
    "job_events",
    "job_path",
    "list_deliveries",
    "list_jobs",
    "list_subscriptions",
    "parse_deliveries_page",
    "parse_jobs_page",
    "register",
    "retry_delivery",
    "session_options",
]

DEFAULT_URL = "http://127.0.0.1:8000"  # where `relay serve` listens by default
T = TypeVar("T")
# A long-poll's answer may come this long after its wait is up (a busy relay, a slow network).
LONG_POLL_SLACK_S = 30.0


@dataclass(frozen=True, slots=True)
class Call:
    """One request to relay: what `httpx.Client.request` and `.stream` take."""

    method: str
    path: str
    params: dict[str, str] = field(default_factory=dict)
    json: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    timeout: httpx.Timeout | None = None  # None: the client's own

    def options(self) -> dict[str, Any]:
        """Keyword arguments for `httpx.Client.request`/`stream` (and the async ones)."""
        options: dict[str, Any] = {"params": self.params, "headers": self.headers}
        if self.json is not None:
            options["json"] = self.json
        if self.timeout is not None:
            options["timeout"] = self.timeout
        return options


@dataclass(frozen=True, slots=True)
class Page(Generic[T]):
    """One page of a list and the cursor of the next (None after the last)."""

    items: list[T]
    next_cursor: str | None


def session_options(
    url: str | None, api_key: str | None, ticket: str | None, environ: Mapping[str, str] | None = None
) -> dict[str, Any]:
    """`base_url`, `headers` and `params` for the HTTP client: arguments first, then RELAY_URL and
    RELAY_API_KEY; a ticket (read-only, one job) goes in every request's query, as relay reads it."""
    environ = os.environ if environ is None else environ
    base_url = url or environ.get("RELAY_URL") or DEFAULT_URL
    headers = {"user-agent": f"relay-client/{__version__}"}
    if api_key is None and ticket is None:
        api_key = environ.get("RELAY_API_KEY") or None
    if api_key is not None:
        headers["authorization"] = f"Bearer {api_key}"
    params = {"ticket": ticket} if ticket is not None else {}
    return {"base_url": base_url.rstrip("/"), "headers": headers, "params": params}


def _segment(value: str) -> str:
    """One path segment: `/` and `%` escaped, and `.`/`..` too, which HTTP clients would fold away."""
    quoted = quote(value, safe="")
    return quoted.replace(".", "%2E") if quoted in (".", "..") else quoted


def job_path(source: str, job_id: str) -> str:
    return f"/v1/jobs/{_segment(source)}/{_segment(job_id)}"


def _given(**params: Any) -> dict[str, str]:
    """The query parameters that were given (None means not given)."""
    return {name: str(value) for name, value in params.items() if value is not None}


def register(
    source: str,
    job_id: str,
    timeout_s: float | None,
    subscribers: Sequence[str] | None,
    metadata: Mapping[str, Any] | None,
) -> Call:
    body: dict[str, Any] = {"source": source, "job_id": job_id}
    if timeout_s is not None:
        body["timeout_s"] = timeout_s
    if subscribers:
        body["subscribers"] = list(subscribers)
    if metadata:
        body["metadata"] = dict(metadata)
    return Call("POST", "/v1/jobs", json=body)


def get_job(source: str, job_id: str, wait: float | None = None, client_timeout: float = 30.0) -> Call:
    """The job; with `wait`, a long-poll whose read timeout outlasts the wait."""
    if wait is None:
        return Call("GET", job_path(source, job_id))
    timeout = httpx.Timeout(client_timeout, read=wait + LONG_POLL_SLACK_S)
    return Call("GET", job_path(source, job_id), params={"wait": f"{wait:.3f}"}, timeout=timeout)


def job_events(source: str, job_id: str, last_event_id: int | None, idle_timeout: float) -> Call:
    """The job's event stream, from after `last_event_id`; a stream quiet for `idle_timeout` is dead."""
    headers = {"accept": "text/event-stream"}
    if last_event_id is not None:
        headers["last-event-id"] = str(last_event_id)
    timeout = httpx.Timeout(idle_timeout)
    return Call("GET", f"{job_path(source, job_id)}/events", headers=headers, timeout=timeout)


def list_jobs(source: str | None, status: str | None, limit: int | None, cursor: str | None) -> Call:
    return Call("GET", "/v1/jobs", params=_given(source=source, status=status, limit=limit, cursor=cursor))


def cancel(source: str, job_id: str) -> Call:
    return Call("POST", f"{job_path(source, job_id)}/cancel")


def get_source(name: str) -> Call:
    return Call("GET", f"/v1/sources/{_segment(name)}")


def create_subscription(url: str, source: str | None, events: Sequence[str] | None) -> Call:
    body: dict[str, Any] = {"url": url}
    if source is not None:
        body["source"] = source
    if events is not None:
        body["events"] = list(events)
    return Call("POST", "/v1/subscriptions", json=body)


def list_subscriptions() -> Call:
    return Call("GET", "/v1/subscriptions")


def delete_subscription(subscription_id: str) -> Call:
    return Call("DELETE", f"/v1/subscriptions/{_segment(subscription_id)}")


def list_deliveries(
    status: str | None,
    source: str | None,
    job_id: str | None,
    subscription_id: str | None,
    limit: int | None,
    cursor: str | None,
) -> Call:
    params = _given(
        status=status,
        source=source,
        job_id=job_id,
        subscription_id=subscription_id,
        limit=limit,
        cursor=cursor,
    )
    return Call("GET", "/v1/deliveries", params=params)


def retry_delivery(delivery_id: str) -> Call:
    return Call("POST", f"/v1/deliveries/{_segment(delivery_id)}/retry")


def answer(status_code: int, body: bytes) -> Any:
    """The JSON of a successful answer (None for 204); the matching `RelayError` for an error answer."""
    if status_code >= 400:
        raise error_from_answer(status_code, body)
    if status_code == 204 or not body:
        return None
    try:
        return json.loads(body)
    except ValueError:
        raise RelayError(f"relay answered {status_code} without JSON", "bad_answer", status_code) from None


def parse_jobs_page(doc: Any) -> Page[Job]:
    return Page([Job.from_dict(job) for job in doc["jobs"]], doc.get("next_cursor"))


def parse_deliveries_page(doc: Any) -> Page[Delivery]:
    return Page([Delivery.from_dict(d) for d in doc["deliveries"]], doc.get("next_cursor"))


def deliveries_page(doc: Any) -> dict[str, Any]:
    """A deliveries page kept as relay's JSON, checked to be one (a list of deliveries and a cursor)."""
    if not isinstance(doc, dict) or not isinstance(doc.get("deliveries"), list):
        raise RelayError("relay answered a deliveries page without a deliveries list", "bad_answer")
    return doc


def connection_error(exc: httpx.TransportError, base_url: object) -> RelayConnectionError:
    """What a request that got no answer raises."""
    detail = str(exc) or type(exc).__name__
    return RelayConnectionError(f"no answer from relay at {base_url}: {detail}")
