"""`AsyncClient`: relay's API for asyncio code. Requests are built and answers parsed in calls.py, the
waiting and streaming rules live in waiting.py and streaming.py; this module only does the I/O."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping, Sequence
from types import TracebackType
from typing import Any

import httpx

from relay.client import calls
from relay.client.models import Delivery, Event, Job, Subscription
from relay.client.streaming import EventFollow
from relay.client.waiting import WaitPlan

__all__ = ["AsyncClient"]

# Every wait and stream holds a connection for its whole length, so the pool does not cap them.
_LIMITS = httpx.Limits(max_connections=None, max_keepalive_connections=100)


class AsyncClient:
    """relay's API with coroutines and async iterators (the same methods as `Client`).

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
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self._timeout = timeout
        self._poll_s = poll_s
        self._max_outage_s = max_outage_s
        self._idle_timeout = stream_idle_timeout
        self._http = httpx.AsyncClient(
            **calls.session_options(url, api_key, ticket),
            timeout=timeout,
            limits=_LIMITS,
            transport=transport,
        )

    @property
    def url(self) -> str:
        return str(self._http.base_url).rstrip("/")

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the connections."""
        await self._http.aclose()

    async def _send(self, call: calls.Call) -> httpx.Response:
        return await self._http.request(call.method, call.path, **call.options())

    async def _call(self, call: calls.Call) -> Any:
        try:
            response = await self._send(call)
        except httpx.TransportError as exc:
            raise calls.connection_error(exc, self.url) from exc
        return calls.answer(response.status_code, response.content)

    # --- jobs ---

    async def register(
        self,
        source: str,
        job_id: str,
        *,
        timeout_s: float | None = None,
        subscribers: Sequence[str] | None = None,
        metadata: Mapping[str, Any] | None = None,
    ) -> Job:
        """Register a job (or merge into one a callback made); the answer holds `ticket` and `webhook_url`."""
        return Job.from_dict(
            await self._call(calls.register(source, job_id, timeout_s, subscribers, metadata))
        )

    async def get(self, source: str, job_id: str) -> Job:
        """The job as it is now; raises `NotFound` for a job relay does not know."""
        return Job.from_dict(await self._call(calls.get_job(source, job_id)))

    # `timeout` as the contract (API.md) names it, and as Client.wait takes it: not asyncio.timeout, since
    # relay's answer at the deadline matters (WaitTimeout carries the job as last seen).
    async def wait(self, source: str, job_id: str, *, timeout: float | None = None) -> Job:  # noqa: ASYNC109
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
                response = await self._send(call)
            except httpx.TransportError as exc:
                outcome: Job | float = plan.on_transport_error(exc)
            else:
                outcome = plan.on_answer(response.status_code, response.content)
            if isinstance(outcome, Job):
                return outcome
            if outcome > 0:
                await asyncio.sleep(outcome)

    async def events(
        self, source: str, job_id: str, *, last_event_id: int | None = None
    ) -> AsyncIterator[Event]:
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
                async with self._http.stream(call.method, call.path, **call.options()) as response:
                    if response.status_code == 200:
                        follow.opened()
                        async for line in response.aiter_lines():
                            event = follow.feed(line)
                            if event is not None:
                                yield event
                        pause = follow.ended()
                    else:
                        pause = follow.refused(response.status_code, await response.aread())
            except httpx.TransportError as exc:
                pause = follow.broke(exc)
            if pause > 0:
                await asyncio.sleep(pause)

    async def jobs(
        self, *, source: str | None = None, status: str | None = None, page_size: int | None = None
    ) -> AsyncIterator[Job]:
        """Every job (newest first), of one source and status if given, page after page."""
        cursor: str | None = None
        while True:
            page = calls.parse_jobs_page(await self._call(calls.list_jobs(source, status, page_size, cursor)))
            for job in page.items:
                yield job
            if page.next_cursor is None:
                return
            cursor = page.next_cursor

    async def cancel(self, source: str, job_id: str) -> Job:
        """Ask the job's provider to cancel it (it becomes `canceled` once the provider confirms); raises
        `CancelUnsupported` or `AlreadyFinal`."""
        return Job.from_dict(await self._call(calls.cancel(source, job_id)))

    async def webhook_url(self, source: str) -> str:
        """The URL to hand `source`'s provider, the same for every job of the source (with its token where the
        kind signs nothing): submit with it, then register the job ID the provider answered."""
        return str((await self._call(calls.get_source(source)))["webhook_url"])

    # --- subscriptions and deliveries ---

    async def create_subscription(
        self, url: str, *, source: str | None = None, events: Sequence[str] | None = None
    ) -> Subscription:
        """Subscribe `url` to the final events (or `events`) of one source or all; the answer holds its
        `secret`, shown this once."""
        doc = await self._call(calls.create_subscription(url, source, events))
        return Subscription.from_dict(doc)

    async def subscriptions(self) -> list[Subscription]:
        """Every subscription (without secrets)."""
        doc = await self._call(calls.list_subscriptions())
        return [Subscription.from_dict(s) for s in doc["subscriptions"]]

    async def delete_subscription(self, subscription_id: str) -> None:
        """Delete a subscription; its queued deliveries are given up."""
        await self._call(calls.delete_subscription(subscription_id))

    async def deliveries(
        self,
        *,
        status: str | None = None,
        source: str | None = None,
        job_id: str | None = None,
        subscription_id: str | None = None,
        page_size: int | None = None,
    ) -> AsyncIterator[Delivery]:
        """Every delivery matching the filters (newest first), page after page."""
        cursor: str | None = None
        while True:
            call = calls.list_deliveries(status, source, job_id, subscription_id, page_size, cursor)
            page = calls.parse_deliveries_page(await self._call(call))
            for delivery in page.items:
                yield delivery
            if page.next_cursor is None:
                return
            cursor = page.next_cursor

    async def deliveries_page(
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
        return calls.deliveries_page(await self._call(call))

    async def retry_delivery(self, delivery_id: str) -> Delivery:
        """Send a delivery again now (same `webhook-id`, a fresh retry schedule)."""
        return Delivery.from_dict(await self._call(calls.retry_delivery(delivery_id)))
