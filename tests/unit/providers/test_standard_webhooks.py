"""standard-webhooks: v1 HMAC (done before) and the v1a ed25519 form with whpk_ public keys; pointers."""

from __future__ import annotations

import base64
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given, settings
from hypothesis import strategies as st

from relay import signing
from relay.errors import BadRequest, ConfigError, Unauthorized
from relay.models import Status
from tests.unit.providers.support import FIXTURE_KEY, provider

# providers.md 8.2, SWA-S1: v1a over SW-1's message with the fixture key (self-generated; no official vector).
MSG_ID, TS, BODY = "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, b'{"test": 2432232314}'
V1A = "v1a,yoUrgEkc12aGqm0n4Sydmdz55xJfTz4AsAgieHFjmkR7LJtqVCZOQYzvvHjI5kAey+r4iaBGxTFRrl2iBQxtDQ=="
WHPK = "whpk_A6EHv/POEL4dcN0Y50vAmWfk1jCbpQ1fHdyGZBJVMbg="
# SW-1 (official): the v1 signature of the same message.
SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
V1 = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="


def whpk(key: Ed25519PrivateKey) -> str:
    return "whpk_" + base64.b64encode(key.public_key().public_bytes_raw()).decode()


def v1a(key: Ed25519PrivateKey, msg_id: str, ts: int, body: bytes) -> str:
    return "v1a," + base64.b64encode(key.sign(b"%s.%d.%s" % (msg_id.encode(), ts, body))).decode()


def headers(signature: str, msg_id: str = MSG_ID, ts: int = TS) -> dict[str, str]:
    return {"webhook-id": msg_id, "webhook-timestamp": str(ts), "webhook-signature": signature}


@pytest.mark.parametrize(
    "table",
    [
        {"public_key": WHPK},
        {"public_key": [whpk(Ed25519PrivateKey.generate()), WHPK]},
        {"public_key": WHPK.removeprefix("whpk_").rstrip("=")},
        {"public_key": WHPK, "secret": SECRET},
    ],
    ids=["one key", "rotation list", "bare unpadded", "with a secret too"],
)
async def test_v1a_vector_verifies(table: dict[str, Any]) -> None:
    """SWA-S1 verifies with the fixture public key, alone, in a list, bare, or beside a secret."""
    await provider("standard-webhooks", **table).verify(headers(V1A), BODY, TS)


async def test_either_scheme_verifies_a_mixed_source() -> None:
    """A source with both a secret and a public key accepts a v1 entry, a v1a entry, or a mix."""
    source = provider("standard-webhooks", secret=SECRET, public_key=WHPK)
    for signature in (V1, V1A, f"v1,AAAA {V1A}", f"{V1} v1a,AAAA", f"v2,x {V1A}"):
        await source.verify(headers(signature), BODY, TS)


@pytest.mark.parametrize(
    "signature",
    [
        V1A[:-4] + "AA==",  # last bytes changed
        v1a(Ed25519PrivateKey.generate(), MSG_ID, TS, BODY),  # another key
        v1a(FIXTURE_KEY, MSG_ID, TS + 1, BODY),  # another timestamp signed
        v1a(FIXTURE_KEY, "msg_other", TS, BODY),  # another message id signed
        "v1a,not base64!",
        "v1," + V1A[4:],  # the ed25519 signature under the HMAC version
        V1,  # an HMAC entry, and the source has no secret
    ],
    # Named, not by value: one is made with a fresh key, and parallel workers must collect the same tests.
    ids=["tampered", "another-key", "another-timestamp", "another-id", "not-base64", "as-v1", "hmac-entry"],
)
async def test_wrong_v1a_signatures_are_refused(signature: str) -> None:
    """Tampered, foreign-key, wrong-content or malformed v1a entries: 401 bad_signature."""
    with pytest.raises(Unauthorized) as err:
        await provider("standard-webhooks", public_key=WHPK).verify(headers(signature), BODY, TS)
    assert err.value.code == "bad_signature"


async def test_tampered_body_is_refused_for_v1a() -> None:
    """The body is signed: one changed byte is 401."""
    with pytest.raises(Unauthorized):
        await provider("standard-webhooks", public_key=WHPK).verify(
            headers(V1A), BODY.replace(b"2", b"3"), TS
        )


@pytest.mark.parametrize(
    ("drop", "code"),
    [
        ("webhook-id", "missing_id"),
        ("webhook-signature", "missing_signature"),
        ("webhook-timestamp", "missing_timestamp"),
    ],
)
async def test_missing_headers_are_named_for_v1a(drop: str, code: str) -> None:
    """A v1a source names the missing header as the v1 form does."""
    partial = {k: v for k, v in headers(V1A).items() if k != drop}
    with pytest.raises(Unauthorized) as err:
        await provider("standard-webhooks", public_key=WHPK).verify(partial, BODY, TS)
    assert err.value.code == code


@pytest.mark.parametrize("skew", [-301, 301])
async def test_v1a_timestamp_tolerance(skew: int) -> None:
    """Too old or too new: 401 stale_timestamp, before any signature work."""
    with pytest.raises(Unauthorized) as err:
        await provider("standard-webhooks", public_key=WHPK).verify(headers(V1A), BODY, TS + skew)
    assert err.value.code == "stale_timestamp"


@pytest.mark.parametrize(
    ("table", "named"),
    [
        ({}, "sources.src.secret"),
        ({"public_key": "whpk_AAAA"}, "sources.src.public_key"),
        ({"public_key": "whpk_not base64"}, "sources.src.public_key"),
        ({"public_key": [WHPK, 3]}, "sources.src.public_key"),
    ],
)
def test_bad_key_config_names_the_key(table: dict[str, Any], named: str) -> None:
    """No secret nor public key, or a public key that is not 32 bytes of base64: a config error naming it."""
    with pytest.raises(ConfigError, match=named.replace(".", r"\.")):
        provider("standard-webhooks", **table)


@settings(max_examples=50, deadline=None)
@given(body=st.binary(max_size=200), msg_id=st.from_regex(r"msg_[A-Za-z0-9]{1,20}", fullmatch=True))
async def test_v1a_round_trips_and_refuses_tampering(body: bytes, msg_id: str) -> None:
    """Any body signed with the key verifies; the same signature over another body does not."""
    source = provider("standard-webhooks", public_key=WHPK)
    signature = v1a(FIXTURE_KEY, msg_id, TS, body)
    await source.verify(headers(signature, msg_id), body, TS)
    with pytest.raises(Unauthorized):
        await source.verify(headers(signature, msg_id), body + b"x", TS)


async def test_v1_rotation_any_secret_verifies() -> None:
    """secret as a list: a signature by any one of them verifies."""
    other = signing.new_secret()
    await provider("standard-webhooks", secret=[other, SECRET]).verify(headers(V1), BODY, TS)


def test_fields_by_pointer_and_status_map() -> None:
    """job_id_pointer, status_pointer, result_pointer, error_pointer and status_map read a custom body."""
    source = provider(
        "standard-webhooks",
        secret=SECRET,
        job_id_pointer="/job/key",
        status_pointer="/state",
        result_pointer="/out",
        error_pointer="/problem",
        status_map={"dreaming": "running", "READY": "succeeded"},
    )
    body = b'{"job": {"key": 7}, "state": "ready", "out": [1], "problem": {"why": "none"}}'
    callback = source.parse({"webhook-id": "msg_1"}, body)
    assert (callback.job_id, callback.status, callback.result) == ("7", Status.SUCCEEDED, [1])
    assert callback.error == '{"why":"none"}' and callback.delivery_id == "msg_1"
    assert (
        source.parse({"webhook-id": "m"}, b'{"job": {"key": "a"}, "state": "Dreaming"}').status
        == Status.RUNNING
    )


@pytest.mark.parametrize(
    ("table", "named"),
    [
        ({"job_id_pointer": "id"}, "job_id_pointer"),
        ({"status_map": {"x": "exploded"}}, "status_map.x"),
        ({"status_map": {"waiting": "pending"}}, "status_map.waiting"),
        ({"status_map": "done"}, "status_map"),
    ],
)
def test_bad_pointer_config_names_the_key(table: dict[str, Any], named: str) -> None:
    """A pointer without a leading slash or a status_map to an unknown status: config error naming it."""
    with pytest.raises(ConfigError, match=named):
        provider("standard-webhooks", secret=SECRET, **table)


def test_unknown_status_word_is_400() -> None:
    """A status word neither built in nor mapped: 400 unknown_status (the sender retries)."""
    with pytest.raises(BadRequest) as err:
        provider("standard-webhooks", secret=SECRET).parse({"webhook-id": "m"}, b'{"id": 1, "status": "zzz"}')
    assert err.value.code == "unknown_status"
