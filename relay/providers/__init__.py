"""Provider kinds, one module each, behind one small interface (`Provider`)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from urllib.parse import quote

import httpx
from prometheus_client.core import CounterMetricFamily, Metric

from relay.errors import ConfigError
from relay.providers.api import origin_client
from relay.providers.base import Provider, SourceConfig
from relay.providers.baseten import Baseten
from relay.providers.fal import Fal
from relay.providers.generic_hmac import Hmac
from relay.providers.openai import OpenAI
from relay.providers.replicate import Replicate
from relay.providers.runpod import RunPod
from relay.providers.standard_webhooks import StandardWebhooks
from relay.providers.unsigned import Unsigned
from relay.tokens import Tokens

__all__ = [
    "KINDS",
    "Provider",
    "ProviderWarnings",
    "SourceConfig",
    "build_provider",
    "provider_client",
    "webhook_url",
]

KINDS: dict[str, type[Provider]] = {
    cls.kind: cls for cls in (StandardWebhooks, Replicate, OpenAI, Fal, RunPod, Baseten, Hmac, Unsigned)
}


def build_provider(source: SourceConfig) -> Provider:
    """The provider for one configured source; a `ConfigError` names the offending key."""
    try:
        cls = KINDS[source.kind]
    except KeyError:
        raise ConfigError(
            f"sources.{source.name}.kind: unknown kind {source.kind!r} (one of {', '.join(sorted(KINDS))})"
        ) from None
    return cls(source)


def provider_client(providers: Iterable[Provider], timeout_s: float) -> httpx.AsyncClient:
    """The client for providers' own APIs (reconcile): it sends only to their origins, follows no redirect."""
    return origin_client((p.api.origin for p in providers if p.api is not None), timeout_s)


def webhook_url(base_url: str, source: SourceConfig, tokens: Tokens) -> str:
    """The URL a provider posts `source`'s callbacks to, with the URL token where the kind signs nothing."""
    url = f"{base_url.rstrip('/')}/hooks/{quote(source.name, safe='')}"
    if not KINDS[source.kind].signed:
        url += "/" + tokens.hook_token(source.hook_token_subject)
    return url


class ProviderWarnings:
    """A Prometheus collector: `relay_provider_warnings_total{source, reason}` read from the providers."""

    def __init__(self, providers: Mapping[str, Provider]) -> None:
        self._providers = providers

    def collect(self) -> Iterable[Metric]:
        family = CounterMetricFamily(
            "relay_provider_warnings",
            "Callbacks taken but not fully understood (e.g. an unknown event type), by source and reason.",
            labels=["source", "reason"],
        )
        for name, provider in self._providers.items():
            for reason, count in provider.warnings.items():
                family.add_metric([name, reason], count)
        yield family
