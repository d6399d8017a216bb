"""The registry and shared pieces: KINDS, webhook URLs with tokens, dedupe keys, error text, warnings."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry, generate_latest

from relay.errors import ConfigError
from relay.providers import KINDS, ProviderWarnings, build_provider, webhook_url
from relay.providers.base import SourceConfig, derived_delivery_id, error_text
from relay.tokens import Tokens
from tests.unit.providers.support import provider, source

WHSEC = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"


def test_every_kind_is_registered_once() -> None:
    """One module per kind, each under its config name; unsigned kinds take the URL token."""
    assert set(KINDS) == {
        "standard-webhooks",
        "replicate",
        "openai",
        "fal",
        "runpod",
        "baseten",
        "hmac",
        "unsigned",
    }
    assert {kind for kind, cls in KINDS.items() if not cls.signed} == {"runpod", "unsigned"}


def test_unknown_kind_names_the_key() -> None:
    """build_provider on an unknown kind: a config error naming sources.NAME.kind and the known kinds."""
    with pytest.raises(ConfigError, match=r"sources\.x\.kind: unknown kind 'pigeon' \(one of baseten, fal"):
        build_provider(SourceConfig(name="x", kind="pigeon"))


def test_webhook_url_adds_the_token_only_for_unsigned_kinds() -> None:
    """Signed kinds get /hooks/NAME; unsigned ones /hooks/NAME/TOKEN, the token over name and version."""
    tokens = Tokens("k")
    signed = source("openai", name="oai", secret=WHSEC)
    assert webhook_url("https://r.example/", signed, tokens) == "https://r.example/hooks/oai"
    plain = source("runpod", name="rp")
    assert (
        webhook_url("https://r.example", plain, tokens)
        == f"https://r.example/hooks/rp/{tokens.hook_token('rp')}"
    )
    rotated = source("runpod", name="rp", token_version=2)
    token = webhook_url("https://r.example", rotated, tokens).rsplit("/", 1)[1]
    assert tokens.hook_token_valid("rp#2", token) and not tokens.hook_token_valid("rp", token)


@given(a=st.tuples(st.text(min_size=1), st.text()), b=st.tuples(st.text(min_size=1), st.text()))
def test_derived_delivery_ids_never_collide(a: tuple[str, str], b: tuple[str, str]) -> None:
    """Two different (job, status) pairs never share a dedupe key, whatever characters the job ID holds."""
    assert (derived_delivery_id(*a) == derived_delivery_id(*b)) == (a == b)


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (None, None),
        ("", None),
        ([], None),
        ("boom", "boom"),
        ({"a": 1}, '{"a":1}'),
        (["x"], '["x"]'),
        (3, "3"),
        ("CUDA \x00 error", "CUDA \ufffd error"),
        ({"e": "a\x00b"}, '{"e":"a\\u0000b"}'),
    ],
)
def test_error_text(value: object, text: str | None) -> None:
    """Provider error fields become text: empty ones none, strings as they are (a NUL as U+FFFD), anything
    else as JSON."""
    assert error_text(value) == text


def test_warnings_are_exported_as_a_prometheus_counter() -> None:
    """ProviderWarnings exposes each provider's warnings as relay_provider_warnings_total{source,reason}."""
    oai = provider("openai", secret=WHSEC)
    oai.warn("unknown_event_type", "test")
    oai.warn("unknown_event_type", "test")
    registry = CollectorRegistry()
    registry.register(ProviderWarnings({"oai": oai, "rp": provider("runpod")}))
    text = generate_latest(registry).decode()
    assert 'relay_provider_warnings_total{reason="unknown_event_type",source="oai"} 2.0' in text
