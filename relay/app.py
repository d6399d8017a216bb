"""`create_app(settings)`: the Starlette app; its lifespan opens the store and builds the services."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import aiohttp
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from relay.archive import archive_session
from relay.archiver import Archiver
from relay.cors import cors_middleware
from relay.delivery import Deliverer
from relay.delivery_http import delivery_client
from relay.errors import BadRequest, InternalError, RelayError
from relay.hub import Hub
from relay.ingest import Ingestor
from relay.loops import Loop, supervise
from relay.metrics import Metrics
from relay.openapi import routes as openapi_routes
from relay.providers import ProviderWarnings, build_provider, provider_client
from relay.routes import deliveries, files, hooks, jobs, ops, streams, subscriptions
from relay.routes.common import error_response, json_response
from relay.services import Services
from relay.settings import Settings
from relay.store import Changes, Store, open_store
from relay.sweeper import Sweeper
from relay.tokens import Tokens
from relay.ui import CallbackWindow
from relay.ui import routes as ui_routes

__all__ = ["create_app"]

_LOOP_GRACE_S = 5.0


class RelayApp(Starlette):
    """Starlette, with the providers' callbacks taken straight to their endpoint.

    `POST /hooks/...` is nearly all of relay's traffic, and its endpoint answers its own errors, so it skips
    the middleware and the router in between (about a tenth of the server's CPU per callback,
    docs/benchmarks.md). Every other request, including a hook URL with another method, goes through both.
    """

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and (params := hooks.hook_params(scope)) is not None:
            scope["app"] = self
            scope["path_params"] = params
            await hooks.endpoint(scope, receive, send)
            return
        if scope["type"] == "http" and _holds_nul(scope):
            # No stored value holds NUL (PostgreSQL's text cannot), so nothing a URL with one asks for exists.
            refusal = BadRequest("a URL may not hold a NUL character (%00)", "bad_url")
            await error_response(refusal)(scope, receive, send)
            return
        await super().__call__(scope, receive, send)


def _heard_through_the_database() -> None:
    """No deliverer in this process: the one in a `relay worker` hears of new deliveries from the database."""


# How often a waiter reads a shared database when nothing can tell it of other processes' commits.
UNHEARD_POLL_S = 1.0


def _archiving(services: Services, worker: bool) -> aiohttp.ClientSession | None:
    """Open the archive's blob store (files are served where the API is), and where the deliverer runs, the
    archiver with its guarded client; answer that client, for the app to close."""
    config = services.settings.archive
    if config is None:
        return None
    services.blobs = config.open_store()
    if not worker or not any(source.archive for source in services.settings.sources.values()):
        return None
    session = archive_session(
        allow_private=services.settings.allow_private_destinations, limit=config.concurrency
    )
    ingestor = services.ingestor
    archiver = Archiver(
        config,
        services.settings.sources,
        services.store,
        services.blobs,
        session,
        ingestor.announce,
        services.clock,
        services.metrics,
    )
    services.loops.append(archiver)
    return session


def waiter_poll_s(settings: Settings, store: Store, feed: Loop | None) -> float:
    """How long a waiter goes without reading the store, though nothing woke it: `waiter_poll_s`, shorter
    where other processes commit and no change feed tells of it (PostgreSQL with `listen=off`)."""
    if store.shared and feed is None:
        return min(settings.waiter_poll_s, UNHEARD_POLL_S)
    return settings.waiter_poll_s


def _holds_nul(scope: Scope) -> bool:
    """Whether the path or the query string carries a percent-encoded NUL."""
    return b"%00" in scope.get("raw_path", b"") or b"%00" in scope.get("query_string", b"")


async def _relay_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RelayError)
    return error_response(exc)


_HTTP_ERROR_CODES = {404: "not_found", 405: "method_not_allowed"}


async def _http_error(request: Request, exc: Exception) -> Response:
    """Starlette's own refusals (no such path, a method the path does not take) in the API's error shape."""
    assert isinstance(exc, HTTPException)
    code = _HTTP_ERROR_CODES.get(exc.status_code, "http_error")
    headers = dict(exc.headers) if exc.headers else None
    return json_response({"error": {"code": code, "message": exc.detail}}, exc.status_code, headers)


async def _unexpected_error(request: Request, exc: Exception) -> Response:
    """A bug or an unforeseen failure: a JSON 500 in the API's error shape (Starlette logs the traceback)."""
    return error_response(InternalError("relay could not complete this request; the error is logged"))


def create_app(
    settings: Settings,
    *,
    clock: Callable[[], float] = time.time,
    background: bool = True,
    worker: bool = True,
) -> Starlette:
    """The relay app; nothing is opened until its lifespan starts.

    With `background=False` the loops are built but not started: tests drive their `run_once(now)`. With
    `worker=False` this process only serves HTTP: the deliverer and the sweeper run in other processes on the
    same database (`relay worker`), which hear of its changes through the database.
    """

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        store = await open_store(settings.database)
        try:
            async with _running(app, store) as services:
                stop = asyncio.Event()
                # Supervised: a loop whose run dies is logged, restarted with backoff, reported by /healthz.
                tasks = [
                    asyncio.create_task(supervise(loop, stop), name=loop.name)
                    for loop in services.loops
                    if background
                ]
                try:
                    yield
                finally:
                    # Stop taking work, give running rounds a bounded grace period, then cancel the rest.
                    stop.set()
                    if tasks:
                        _, pending = await asyncio.wait(tasks, timeout=_LOOP_GRACE_S)
                        for task in pending:
                            task.cancel()
                        await asyncio.gather(*pending, return_exceptions=True)
        finally:
            await store.close()

    @asynccontextmanager
    async def _running(app: Starlette, store: Store) -> AsyncIterator[Services]:
        """The services on `store`, with their loops built (not started) and their clients closed on exit."""
        providers = {name: build_provider(source) for name, source in settings.sources.items()}
        hub = Hub(settings.max_waiters)
        tokens = Tokens(settings.secret_key)
        metrics = Metrics(ProviderWarnings(providers))
        ingestor = Ingestor(providers, store, hub, tokens, clock, base_url=settings.base_url)
        # Calls to providers' own APIs (reconcile): only to their configured origins, no redirects.
        provider_http = provider_client(providers.values(), settings.reconcile_timeout_s)
        # Deliveries: one shared, guarded client; each committed job change wakes the deliverer.
        delivery_http = delivery_client(settings) if worker else None
        deliverer = None
        if delivery_http is not None:
            deliverer = Deliverer(settings, store, delivery_http, clock, metrics)
            ingestor.listeners.append(deliverer.wake)
        wake_deliverer = deliverer.wake if deliverer is not None else _heard_through_the_database

        def missed() -> None:
            hub.wake_all()
            wake_deliverer()

        feed = store.change_feed(
            Changes(
                job_changed=lambda source, job_id: hub.publish((source, job_id)),
                deliveries_queued=wake_deliverer,
                missed=missed,
            )
        )
        services = Services(
            settings=settings,
            store=store,
            hub=hub,
            tokens=tokens,
            metrics=metrics,
            providers=providers,
            ingestor=ingestor,
            clock=clock,
            provider_http=provider_http,
            wake_deliverer=wake_deliverer,
            waiter_poll_s=waiter_poll_s(settings, store, feed),
        )
        if deliverer is not None:
            services.loops.append(Sweeper(settings, store, providers, ingestor, provider_http, clock))
            services.loops.append(deliverer)
        if feed is not None:
            services.loops.append(feed)
        if settings.ui:  # the dashboard's Sources page: callbacks of the last hour
            services.loops.append(CallbackWindow(metrics, clock))
        archive_http = _archiving(services, worker)
        app.state.services = services
        try:
            yield services
        finally:
            await provider_http.aclose()
            if delivery_http is not None:
                await delivery_http.aclose()
            if archive_http is not None:
                await archive_http.close()
            if services.blobs is not None:
                await services.blobs.aclose()

    return RelayApp(
        routes=[
            *hooks.routes,
            *jobs.routes,
            *streams.routes,
            *ops.routes,
            *subscriptions.routes,
            *deliveries.routes,
            *files.routes,
            *openapi_routes,
            *ui_routes(settings),
        ],
        exception_handlers={
            RelayError: _relay_error,
            HTTPException: _http_error,
            Exception: _unexpected_error,
        },
        lifespan=lifespan,
        middleware=cors_middleware(settings.cors_origins, [*jobs.routes, *streams.routes, *files.routes]),
    )
