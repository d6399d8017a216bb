"""Provider kinds, one module each, behind one small interface (`Provider`)."""

from __future__ import annotations

from relay.errors import ConfigError
from relay.providers.base import Provider, SourceConfig
from relay.providers.replicate import Replicate
from relay.providers.standard_webhooks import StandardWebhooks

__all__ = ["KINDS", "Provider", "SourceConfig", "build_provider"]

KINDS: dict[str, type[Provider]] = {cls.kind: cls for cls in (StandardWebhooks, Replicate)}


def build_provider(source: SourceConfig) -> Provider:
    """The provider for one configured source; a `ConfigError` names the offending key."""
    try:
        cls = KINDS[source.kind]
    except KeyError:
        raise ConfigError(
            f"sources.{source.name}.kind: unknown kind {source.kind!r} (one of {', '.join(sorted(KINDS))})"
        ) from None
    return cls(source)
