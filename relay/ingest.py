"""The inbound use case: verify -> parse -> store.ingest -> hub.publish."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping

from relay.errors import NotFound, Unauthorized
from relay.hub import Hub
from relay.models import IngestOutcome
from relay.providers import Provider
from relay.store import Store
from relay.tokens import Tokens

__all__ = ["Ingestor"]


class Ingestor:
    """Takes one provider callback; answers only after it is committed."""

    def __init__(
        self,
        providers: Mapping[str, Provider],
        store: Store,
        hub: Hub,
        tokens: Tokens,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._providers = providers
        self._store = store
        self._hub = hub
        self._tokens = tokens
        self._clock = clock

    async def ingest(
        self, source: str, headers: Mapping[str, str], body: bytes, token: str | None = None
    ) -> IngestOutcome:
        """Verify and store one callback, then wake whoever waits on its job."""
        provider = self._providers.get(source)
        if provider is None:
            raise NotFound(f"no source named {source!r} is configured", "unknown_source")
        now = self._clock()
        if provider.signed:
            if token is not None:
                raise NotFound(f"source {source!r} is signed: post to /hooks/{source}", "unknown_source")
            provider.verify(headers, body, now)
        elif token is None or not self._tokens.hook_token_valid(source, token):
            raise Unauthorized(f"missing or wrong URL token for source {source!r}", "bad_token")
        callback = provider.parse(headers, body)
        outcome = await self._store.ingest(source, callback, now, provider.source.timeout_s)
        if outcome.changed:
            self._hub.publish((source, callback.job_id), outcome.job)
        return outcome
