"""`Client`: relay's API for blocking code. Requests are built and answers parsed in relay/client/calls.py,
the waiting and streaming rules live in waiting.py and streaming.py; this module only does the I/O."""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping, Sequence
from types import TracebackType
from typing import Any

import httpx

from relay.client import calls
from relay.client.models import Delivery, Event, Job, Subscription
from relay.client.streaming import EventFollow
from relay.client.waiting import WaitPlan

__all__ = ["Client"]

# Every wait and stream holds a connection for its whole length, so the pool does not cap them.
_LIMITS = httpx.Limits(max_connections=None, max_keepalive_connections=100)


class Client:
    """relay's API, blocking (the same methods as `AsyncClient`).

    `url` and `api_key` default to RELAY_URL and RELAY_API_KEY (and http://127.0.0.1:8000); `ticket` instead
    of a key reads the one job it was issued for. `timeout` bounds each request, `poll_s` each long-poll of
    `wait()`; `wait()` and `events()` keep retrying a relay that does not answer for `max_outage_s`.
    """

    def __init__(
        self,
        url: str | None = None,
        *,
        api_key: str | None = None,
        ticket: str | None = None,
        timeout: float = 30.0,
        poll_s: float = 60.0,
        max_outage_s: float = 300.0,
        stream_idle_timeout: float = 60.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self._timeout = timeout
        self._poll_s = poll_s
        self._max_outage_s = max_outage_s
        self._idle_timeout = stream_idle_timeout
        self._http = httpx.Client(
            **calls.session_options(url, api_key, ticket),
            timeout=timeout,
            limits=_LIMITS,
            transport=transport,
        )

    @property
    def url(self) -> str:
        return str(self._http.base_url).rstrip("/")

    def __enter__(self) -> Client:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        """Close the connections."""
        self._http.close()

    def _send(self, call: calls.Call) -> httpx.Response:
        return self._http.request(call.method, call.path, **call.options())

    def _call(self, call: calls.Call) -> Any:
        try:
            response = self._send(call)
        except httpx.TransportError as exc:
            raise calls.connection_error(exc, self.url) from exc
        return calls.answer(response.status_code, response.content)

    # --- jobs ---

    def register(
        self,
        source: str,
        job_id: str,
        *,
        timeout_s: float | None = None,
        subscribers: Sequence[str] | None = None,
        metadata: Mapping[str, Any] | None = None,
    ) -> Job:
        """Register a job (or merge into one a callback made); the answer holds `ticket` and `webhook_url`."""
        return Job.from_dict(self._call(calls.register(source, job_id, timeout_s, subscribers, metadata)))

    def get(self, source: str, job_id: str) -> Job:
        """The job as it is now; raises `NotFound` for a job relay does not know."""
        return Job.from_dict(self._call(calls.get_job(source, job_id)))

    def wait(self, source: str, job_id: str, *, timeout: float | None = None) -> Job:
        """The job once final (whatever its status), through restarts; raises `WaitTimeout` after `timeout`
        seconds (None: no limit), or why relay did not answer if it was unreachable when time ran out."""
        plan = WaitPlan(
            source,
            job_id,
            timeout,
            poll_s=self._poll_s,
            max_outage_s=self._max_outage_s,
            client_timeout=self._timeout,
            base_url=self.url,
        )
        while True:
            call = plan.next_call()
            try:
                response = self._send(call)
            except httpx.TransportError as exc:
                outcome: Job | float = plan.on_transport_error(exc)
            else:
                outcome = plan.on_answer(response.status_code, response.content)
            if isinstance(outcome, Job):
                return outcome
            if outcome > 0:
                time.sleep(outcome)

    def events(self, source: str, job_id: str, *, last_event_id: int | None = None) -> Iterator[Event]:
        """Each event of the job's stream once, in order, reconnecting after a drop, until it ends after a
        final state."""
        follow = EventFollow(
            source,
            job_id,
            last_event_id,
            idle_timeout=self._idle_timeout,
            max_outage_s=self._max_outage_s,
            base_url=self.url,
        )
        while not follow.done:
            call = follow.next_call()
            try:
                with self._http.stream(call.method, call.path, **call.options()) as response:
                    if response.status_code == 200:
                        follow.opened()
                        for line in response.iter_lines():
                            event = follow.feed(line)
                            if event is not None:
                                yield event
                        pause = follow.ended()
                    else:
                        pause = follow.refused(response.status_code, response.read())
            except httpx.TransportError as exc:
                pause = follow.broke(exc)
            if pause > 0:
                time.sleep(pause)

    def jobs(
        self, *, source: str | None = None, status: str | None = None, page_size: int | None = None
    ) -> Iterator[Job]:
        """Every job (newest first), of one source and status if given, page after page."""
        cursor: str | None = None
        while True:
            page = calls.parse_jobs_page(self._call(calls.list_jobs(source, status, page_size, cursor)))
            yield from page.items
            if page.next_cursor is None:
                return
            cursor = page.next_cursor

    def cancel(self, source: str, job_id: str) -> Job:
        """Ask the job's provider to cancel it (it becomes `canceled` once the provider confirms); raises
        `CancelUnsupported` or `AlreadyFinal`."""
        return Job.from_dict(self._call(calls.cancel(source, job_id)))

    def webhook_url(self, source: str) -> str:
        """The URL to hand `source`'s provider, the same for every job of the source (with its token where the
        kind signs nothing): submit with it, then register the job ID the provider answered."""
        return str(self._call(calls.get_source(source))["webhook_url"])

    # --- subscriptions and deliveries ---

    def create_subscription(
        self, url: str, *, source: str | None = None, events: Sequence[str] | None = None
    ) -> Subscription:
        """Subscribe `url` to the final events (or `events`) of one source or all; the answer holds its
        `secret`, shown this once."""
        doc = self._call(calls.create_subscription(url, source, events))
        return Subscription.from_dict(doc)

    def subscriptions(self) -> list[Subscription]:
        """Every subscription (without secrets)."""
        doc = self._call(calls.list_subscriptions())
        return [Subscription.from_dict(s) for s in doc["subscriptions"]]

    def delete_subscription(self, subscription_id: str) -> None:
        """Delete a subscription; its queued deliveries are given up."""
        self._call(calls.delete_subscription(subscription_id))

    def deliveries(
        self,
        *,
        status: str | None = None,
        source: str | None = None,
        job_id: str | None = None,
        subscription_id: str | None = None,
        page_size: int | None = None,
    ) -> Iterator[Delivery]:
        """Every delivery matching the filters (newest first), page after page."""
        cursor: str | None = None
        while True:
            call = calls.list_deliveries(status, source, job_id, subscription_id, page_size, cursor)
            page = calls.parse_deliveries_page(self._call(call))
            yield from page.items
            if page.next_cursor is None:
                return
            cursor = page.next_cursor

    def deliveries_page(
        self,
        *,
        status: str | None = None,
        source: str | None = None,
        job_id: str | None = None,
        subscription_id: str | None = None,
        limit: int | None = None,
        cursor: str | None = None,
    ) -> dict[str, Any]:
        """One page of deliveries as relay answered it: `{"deliveries": [...], "next_cursor": ...}`."""
        call = calls.list_deliveries(status, source, job_id, subscription_id, limit, cursor)
        return calls.deliveries_page(self._call(call))

    def retry_delivery(self, delivery_id: str) -> Delivery:
        """Send a delivery again now (same `webhook-id`, a fresh retry schedule)."""
        return Delivery.from_dict(self._call(calls.retry_delivery(delivery_id)))
