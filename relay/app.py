"""`create_app(settings)`: the Starlette app; its lifespan opens the store and builds the services."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response

from relay.errors import RelayError
from relay.hub import Hub
from relay.ingest import Ingestor
from relay.metrics import Metrics
from relay.providers import Provider, build_provider
from relay.routes import hooks, jobs, ops
from relay.routes.common import error_response
from relay.settings import Settings
from relay.store import Store, open_store
from relay.tokens import Tokens

__all__ = ["Services", "create_app"]


@dataclass
class Services:
    """What handlers reach through `request.app.state.services`."""

    settings: Settings
    store: Store
    hub: Hub
    tokens: Tokens
    metrics: Metrics
    providers: dict[str, Provider]
    ingestor: Ingestor
    clock: Callable[[], float]

    def webhook_url(self, source: str) -> str:
        """The URL a provider posts this source's callbacks to (with a token where the kind signs nothing)."""
        return self.settings.webhook_url(source, self.tokens)


async def _relay_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RelayError)
    return error_response(exc)


def create_app(settings: Settings, *, clock: Callable[[], float] = time.time) -> Starlette:
    """The relay app; nothing is opened until its lifespan starts."""

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        store = await open_store(settings.database, synchronous=settings.sqlite_synchronous)
        try:
            providers = {name: build_provider(source) for name, source in settings.sources.items()}
            hub = Hub(settings.max_waiters)
            tokens = Tokens(settings.secret_key)
            app.state.services = Services(
                settings=settings,
                store=store,
                hub=hub,
                tokens=tokens,
                metrics=Metrics(),
                providers=providers,
                ingestor=Ingestor(providers, store, hub, tokens, clock),
                clock=clock,
            )
            yield
        finally:
            await store.close()

    return Starlette(
        routes=[*hooks.routes, *jobs.routes, *ops.routes],
        exception_handlers={RelayError: _relay_error},
        lifespan=lifespan,
    )
