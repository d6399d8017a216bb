"""`Services`: what the handlers and loops share, built by the app's lifespan (relay/app.py)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeVar

import httpx

from relay.archive import BlobStore
from relay.hub import Hub
from relay.ingest import Ingestor
from relay.loops import Loop
from relay.metrics import Metrics
from relay.providers import Provider
from relay.settings import Settings
from relay.store import Store
from relay.tokens import Tokens

__all__ = ["Services"]

L = TypeVar("L", bound=Loop)


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
    provider_http: httpx.AsyncClient
    # Deliveries were queued outside a callback (a late per-job subscriber, a manual retry): send them now.
    wake_deliverer: Callable[[], None]
    # How long a waiter goes without reading the store again, though nothing woke it.
    waiter_poll_s: float
    loops: list[Loop] = field(default_factory=list)
    # Where archived files are kept (relay/archive); None without an [archive] table.
    blobs: BlobStore | None = None

    def loop(self, kind: type[L]) -> L:
        """The running loop of a kind (tests drive its `run_once`)."""
        return next(loop for loop in self.loops if isinstance(loop, kind))

    def webhook_url(self, source: str) -> str:
        """The URL a provider posts this source's callbacks to (with a token where the kind signs nothing)."""
        return self.settings.webhook_url(source, self.tokens)
