"""Standard Webhooks signing: official vectors, negatives, tolerance, and two independent oracles."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any
from unittest import mock

import openai
import openai.lib._webhooks as openai_webhooks
import pytest
import standardwebhooks.webhooks
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from standardwebhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError

from relay import signing
from relay.errors import ConfigError, Unauthorized

# providers.md section 8.1, copied exactly.
SW1 = SimpleNamespace(
    secret="whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
    msg_id="msg_p5jXN8AQM9LWM0D4loKWxJek",
    timestamp=1614265330,
    body=b'{"test": 2432232314}',
    signature="v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=",
)
SW2 = SimpleNamespace(
    secret="whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD",
    msg_id="msg_27UH4WbU6Z5A5EzD8u03UvzRbpk",
    timestamp=1649367553,
    body=b'{"email":"test@example.com","username":"test_user"}',
    signature="v1,tZ1I4/hDygAJgO5TYxiSd6Sd0kDW6hPenDe+bTa3Kkw=",
)
OAI1 = SimpleNamespace(
    secret="whsec_RdvaYFYUXuIFuEbvZHwMfYFhUf7aMYjYcmM24+Aj40c=",
    msg_id="wh_685c059ae39c8190af8c71ed1022a24d",
    timestamp=1750861210,
    body=(
        b'{"id": "evt_685c059ae3a481909bdc86819b066fb6", "object": "event", "created_at": 1750861210, '
        b'"type": "response.completed", "data": {"id": "resp_123"}}'
    ),
    signature="v1,gUAg4R2hWouRZqRQG4uJypNS8YK885G838+EHb4nKBY=",
)
VECTORS = {"SW-1": SW1, "SW-2": SW2, "OAI-1": OAI1}

SW1_NEGATIVES = {
    "last char changed": "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OA=",
    "wrong secret": "v1,Ceo5qEr07ixe2NLpvHk3FH9bwy/WavXrAFQ/9tdO6mc=",
    "v2 entry skipped": "v2,Ceo5qEr07ixe2NLpvHk3FH9bwy/WavXrAFQ/9tdO6mc=",
    "empty v1": "v1,",
    "garbage": "v1,dawfeoifkpqwoekfpqoekf",
    "no comma": "dawfeoifkpqwoekfpqoekf",
    "v2 carrying the valid value": "v2,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=",
    "bare base64 of the valid value": "g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=",
}
SW2_NEGATIVE = "v1,R3PTzyfHASBKHH98a7yexTwaJ4yNIcGhFQc1yuN+BPU="
TOLERANCE = 300


def verify_vector(vector: Any, signature: str | None = None, **changes: Any) -> None:
    """Our verify on a vector, with `now` pinned to its timestamp unless changed."""
    args: dict[str, Any] = {
        "keys": [signing.decode_secret(vector.secret)],
        "msg_id": vector.msg_id,
        "timestamp": str(vector.timestamp),
        "signature_header": vector.signature if signature is None else signature,
        "body": vector.body,
        "now": float(vector.timestamp),
        "tolerance_s": TOLERANCE,
    }
    args.update(changes)
    signing.verify(**args)


def refused(code: str, vector: Any = SW1, signature: str | None = None, **changes: Any) -> Unauthorized:
    """Assert our verify refuses with `code` and never reveals the expected signature; answer the error."""
    with pytest.raises(Unauthorized) as info:
        verify_vector(vector, signature, **changes)
    error = info.value
    assert error.code == code
    assert error.status == 401
    expected_b64 = vector.signature.removeprefix("v1,")
    assert expected_b64 not in error.message
    assert expected_b64 not in str(error)
    return error


@contextmanager
def oracle_clock(now: int) -> Iterator[None]:
    """Pin the `standardwebhooks` package's clock (it reads `datetime.now`, no `now` argument)."""

    class Frozen(datetime):
        @classmethod
        def now(cls, tz: Any = None) -> Any:
            return datetime.fromtimestamp(now, tz)

    with mock.patch.object(standardwebhooks.webhooks, "datetime", Frozen):
        yield


def oracle_sign(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    """The `standardwebhooks` package's signature."""
    return Webhook(secret).sign(msg_id, datetime.fromtimestamp(timestamp, UTC), body.decode())


def oracle_verify(secret: str, msg_id: str, timestamp: int, signature: str, body: bytes, now: int) -> None:
    """The `standardwebhooks` package's verify, its clock pinned to `now`."""
    headers = {"webhook-id": msg_id, "webhook-timestamp": str(timestamp), "webhook-signature": signature}
    with oracle_clock(now):
        Webhook(secret).verify(body.decode(), headers, json_parse=False)


# ---- official vectors ----------------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(VECTORS))
def test_sign_produces_the_published_signature(name: str) -> None:
    """`sign` reproduces each official vector's signature exactly."""
    v = VECTORS[name]
    assert signing.sign(signing.decode_secret(v.secret), v.msg_id, v.timestamp, v.body) == v.signature


@pytest.mark.parametrize("name", sorted(VECTORS))
def test_verify_accepts_the_published_signature(name: str) -> None:
    """`verify` accepts each official vector with `now` pinned to its timestamp."""
    verify_vector(VECTORS[name])


@pytest.mark.parametrize("name", sorted(VECTORS))
def test_oracle_agrees_on_the_published_vectors(name: str) -> None:
    """The `standardwebhooks` package signs and verifies each vector the same way (oracle sanity)."""
    v = VECTORS[name]
    assert oracle_sign(v.secret, v.msg_id, v.timestamp, v.body) == v.signature
    oracle_verify(v.secret, v.msg_id, v.timestamp, v.signature, v.body, now=v.timestamp)


@pytest.mark.parametrize("signature", SW1_NEGATIVES.values(), ids=SW1_NEGATIVES.keys())
def test_sw1_negatives_are_refused_as_bad_signature(signature: str) -> None:
    """Each negative of the official suites is refused with code bad_signature."""
    refused("bad_signature", SW1, signature)


def test_sw2_negative_is_refused() -> None:
    """The Rust library's `test_no_verify` signature is refused."""
    refused("bad_signature", SW2, SW2_NEGATIVE)


def test_multi_signature_header_passes_when_any_v1_entry_matches() -> None:
    """`<bad v1> <v2> <valid v1> <bad v1>` verifies: unknown versions are skipped, any v1 match wins."""
    header = " ".join(
        [SW1_NEGATIVES["last char changed"], SW1_NEGATIVES["v2 entry skipped"], SW1.signature, "v1,Zm9v"]
    )
    verify_vector(SW1, header)


def test_multi_signature_header_with_only_bad_entries_fails() -> None:
    """`v1,invalid_signature1 v1,invalid_signature2` is refused (OpenAI SDK suite)."""
    refused("bad_signature", OAI1, "v1,invalid_signature1 v1,invalid_signature2")


def test_invalid_then_valid_entry_passes() -> None:
    """`v1,invalid_signature v1,<valid>` verifies (OpenAI SDK suite)."""
    verify_vector(OAI1, f"v1,invalid_signature {OAI1.signature}")


def test_verify_refuses_a_changed_body_id_and_timestamp() -> None:
    """The vector's signature does not cover another body, message id or timestamp."""
    refused("bad_signature", SW1, body=SW1.body + b" ")
    refused("bad_signature", SW1, msg_id=SW1.msg_id + "x")
    refused("bad_signature", SW1, timestamp=str(SW1.timestamp + 1))


# ---- secrets and keys ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("unpadded", "padding"),
    [("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaS", "="), ("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSwBr", "==")],
)
def test_unpadded_secrets_decode_as_padded(unpadded: str, padding: str) -> None:
    """A secret missing its base64 padding decodes to the padded key and signs as the reference does."""
    key = base64.b64decode(unpadded + padding)
    for secret in (unpadded, "whsec_" + unpadded, "whsec_" + unpadded + padding):
        assert signing.decode_secret(secret) == key
    ours = signing.sign(key, SW1.msg_id, SW1.timestamp, SW1.body)
    assert ours == oracle_sign("whsec_" + unpadded, SW1.msg_id, SW1.timestamp, SW1.body)
    signing.verify([key], SW1.msg_id, str(SW1.timestamp), ours, SW1.body, SW1.timestamp, TOLERANCE)


def test_secret_without_prefix_is_the_same_key() -> None:
    """A secret without `whsec_` decodes to the same key and reproduces SW-1."""
    key = signing.decode_secret(SW1.secret.removeprefix("whsec_"))
    assert key == signing.decode_secret(SW1.secret)
    assert signing.sign(key, SW1.msg_id, SW1.timestamp, SW1.body) == SW1.signature


@pytest.mark.parametrize("secret", ["whsec_", "", "whsec_not base64!", "whsec_a"])
def test_unusable_secrets_are_a_config_error(secret: str) -> None:
    """An empty or non-base64 secret is a ConfigError, not a key."""
    with pytest.raises(ConfigError):
        signing.decode_secret(secret)


def test_new_secret_is_32_random_bytes_with_prefix() -> None:
    """`new_secret` makes distinct `whsec_` secrets of 32 bytes that the reference library accepts."""
    first, second = signing.new_secret(), signing.new_secret()
    assert first != second
    assert first.startswith("whsec_")
    assert len(signing.decode_secret(first)) == 32
    Webhook(first)


def test_any_of_several_keys_verifies() -> None:
    """With rotated secrets, a signature by any one of the keys verifies, in any order."""
    right = signing.decode_secret(SW1.secret)
    wrong = signing.decode_secret(SW2.secret)
    verify_vector(SW1, keys=[wrong, right])
    verify_vector(SW1, keys=[right, wrong])
    refused("bad_signature", SW1, keys=[wrong])
    refused("bad_signature", SW1, keys=[])


# ---- timestamps and headers ------------------------------------------------------------------------------


@pytest.mark.parametrize("offset", [-TOLERANCE, 0, TOLERANCE])
def test_timestamp_at_the_tolerance_boundaries_passes(offset: int) -> None:
    """A timestamp exactly `tolerance` old or ahead of now is accepted."""
    verify_vector(SW1, now=float(SW1.timestamp + offset))


@pytest.mark.parametrize("offset", [-TOLERANCE - 1, TOLERANCE + 1, -400, 400])
def test_timestamp_outside_tolerance_is_stale(offset: int) -> None:
    """A timestamp more than `tolerance` old or ahead is refused as stale, even with a valid signature."""
    refused("stale_timestamp", SW1, now=float(SW1.timestamp + offset))


@pytest.mark.parametrize(
    "timestamp",
    [
        "1614265330.0",
        "161426533.0",
        "invalid timestamp",
        "-161426533",
        "-1614265330",
        "+1614265330",
        " 1614265330",
        "1614265330 ",
        "1.6e9",
        "0x603a5df2",
        "١٦١٤٢٦٥٣٣٠",  # Arabic-Indic digits: isdigit() but not ASCII
        "9" * 400,  # would overflow the float comparison
        "9" * 5000,  # beyond int()'s default digit limit
    ],
)
def test_non_integer_timestamps_are_bad_timestamp(timestamp: str) -> None:
    """Anything but ASCII integer seconds is refused with code bad_timestamp."""
    refused("bad_timestamp", SW1, timestamp=timestamp)


def test_check_timestamp_answers_the_integer() -> None:
    """`check_timestamp` answers the parsed value when it is fresh."""
    assert signing.check_timestamp("1614265330", 1614265330.5, 1) == 1614265330


@pytest.mark.parametrize(
    ("change", "code"),
    [
        ({"msg_id": None}, "missing_id"),
        ({"msg_id": ""}, "missing_id"),
        ({"signature_header": None}, "missing_signature"),
        ({"signature_header": ""}, "missing_signature"),
        ({"timestamp": None}, "missing_timestamp"),
        ({"timestamp": ""}, "missing_timestamp"),
    ],
)
def test_missing_headers_have_their_own_codes(change: dict[str, Any], code: str) -> None:
    """A missing webhook-id, webhook-signature or webhook-timestamp is refused with its own code."""
    refused(code, SW1, **change)


# ---- the openai package as a second oracle ----------------------------------------------------------------


def test_openai_package_verifies_oai1_and_our_signature(monkeypatch: pytest.MonkeyPatch) -> None:
    """The openai SDK (clock pinned to the vector) accepts OAI-1 as we sign it, and refuses a changed one."""
    monkeypatch.setattr(openai_webhooks, "time", SimpleNamespace(time=lambda: float(OAI1.timestamp)))
    client = openai.OpenAI(api_key="x", webhook_secret=OAI1.secret)
    ours = signing.sign(signing.decode_secret(OAI1.secret), OAI1.msg_id, OAI1.timestamp, OAI1.body)
    headers = {"webhook-id": OAI1.msg_id, "webhook-timestamp": str(OAI1.timestamp), "webhook-signature": ours}
    client.webhooks.verify_signature(OAI1.body, headers, tolerance=TOLERANCE)
    verify_vector(OAI1, ours)
    tampered = {**headers, "webhook-signature": ours[:-2] + ("A=" if ours[-2] != "A" else "B=")}
    with pytest.raises(openai.InvalidWebhookSignatureError):
        client.webhooks.verify_signature(OAI1.body, tampered, tolerance=TOLERANCE)
    refused("bad_signature", OAI1, tampered["webhook-signature"])


@pytest.mark.parametrize("offset", [-400, 400])
def test_openai_package_and_we_refuse_oai1_400s_off(offset: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """Both the openai SDK and we refuse OAI-1 when the clock is 400 s away (tolerance 300)."""
    now = OAI1.timestamp + offset
    monkeypatch.setattr(openai_webhooks, "time", SimpleNamespace(time=lambda: float(now)))
    client = openai.OpenAI(api_key="x", webhook_secret=OAI1.secret)
    headers = {
        "webhook-id": OAI1.msg_id,
        "webhook-timestamp": str(OAI1.timestamp),
        "webhook-signature": OAI1.signature,
    }
    with pytest.raises(openai.InvalidWebhookSignatureError):
        client.webhooks.verify_signature(OAI1.body, headers, tolerance=TOLERANCE)
    refused("stale_timestamp", OAI1, now=float(now))


# ---- round trips against the standardwebhooks package (property tests) ------------------------------------

secret_strategy = st.binary(min_size=24, max_size=64).map(lambda b: "whsec_" + base64.b64encode(b).decode())
msg_id_strategy = st.text(st.characters(codec="utf-8", exclude_characters="."), min_size=1, max_size=40)
timestamp_strategy = st.integers(min_value=0, max_value=4_102_444_800)  # up to 2100
body_strategy = st.text(st.characters(codec="utf-8"), max_size=200).map(str.encode)
FAST = settings(max_examples=200, deadline=None)


@FAST
@given(secret=secret_strategy, msg_id=msg_id_strategy, timestamp=timestamp_strategy, body=body_strategy)
def test_sign_and_verify_agree_with_the_reference_library(
    secret: str, msg_id: str, timestamp: int, body: bytes
) -> None:
    """Our signature equals `standardwebhooks`' and each side verifies the other's."""
    key = signing.decode_secret(secret)
    ours = signing.sign(key, msg_id, timestamp, body)
    assert ours == oracle_sign(secret, msg_id, timestamp, body)
    signing.verify([key], msg_id, str(timestamp), ours, body, float(timestamp), TOLERANCE)
    oracle_verify(secret, msg_id, timestamp, ours, body, now=timestamp)


tampering = st.one_of(
    st.tuples(st.just("body"), st.integers(min_value=0), st.integers(min_value=1, max_value=255)),
    st.tuples(st.just("msg_id"), msg_id_strategy),
    st.tuples(st.just("timestamp"), st.integers(min_value=-1000, max_value=1000)),
    st.tuples(st.just("secret"), secret_strategy),
)


@FAST
@given(
    secret=secret_strategy,
    msg_id=msg_id_strategy,
    timestamp=timestamp_strategy,
    body=body_strategy,
    change=tampering,
)
def test_tampering_is_refused_by_us_and_the_reference_library(
    secret: str, msg_id: str, timestamp: int, body: bytes, change: tuple[Any, ...]
) -> None:
    """Another body byte, id, timestamp or secret fails our verify (bad_signature/stale) and the oracle's."""
    signature = oracle_sign(secret, msg_id, timestamp, body)
    got = {"secret": secret, "msg_id": msg_id, "timestamp": timestamp, "body": body}
    what = change[0]
    if what == "body":
        assume(body)
        index = change[1] % len(body)
        flipped = bytearray(body)
        flipped[index] ^= change[2]
        got["body"] = bytes(flipped)
    elif what == "timestamp":
        assume(change[1] != 0 and timestamp + change[1] >= 0)
        got["timestamp"] = timestamp + change[1]
    else:
        assume(change[1] != got[what])
        got[what] = change[1]
    with pytest.raises(Unauthorized) as info:
        signing.verify(
            [signing.decode_secret(got["secret"])],
            got["msg_id"],
            str(got["timestamp"]),
            signature,
            got["body"],
            float(timestamp),
            TOLERANCE,
        )
    assert info.value.code in ("bad_signature", "stale_timestamp")
    if what == "timestamp" and abs(change[1]) > TOLERANCE:
        assert info.value.code == "stale_timestamp"
    else:
        assert info.value.code == "bad_signature"
    assert signature.removeprefix("v1,") not in info.value.message
    try:
        got["body"].decode()
    except UnicodeDecodeError:
        return  # the reference library takes only text; keep the oracle to well-formed input
    with pytest.raises(WebhookVerificationError):
        oracle_verify(got["secret"], got["msg_id"], got["timestamp"], signature, got["body"], now=timestamp)
