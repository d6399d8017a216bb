"""baseten: `X-BASETEN-SIGNATURE: v1=<hex>` HMAC-SHA256 of the body, time in the body, errors decide."""

from __future__ import annotations

import hashlib
import hmac
from datetime import UTC, datetime

import orjson
import pytest

from relay.errors import BadRequest, ConfigError, Unauthorized
from relay.models import Status
from tests.unit.providers.support import provider

# providers.md 8.2, BT-S1: the docs' placeholder secret and example result (signature computed locally).
SECRET = "whsec_AbCdEf123456GhIjKlMnOpQrStUvWxYz12345678"
BODY = (
    b'{"request_id": "9876543210abcdef1234567890fedcba", "model_id": "my_model_id", "deployment_id": '
    b'"my_deployment_id", "type": "async_request_completed", "time": "2024-04-30T01:01:08.883423Z", '
    b'"data": {"my_model_output": "hello world!"}, "errors": []}'
)
SIGNATURE = "v1=b65d66138564caf46d27145a1713c22bed92306815505e5bd85c9ee76db60dd0"
NOW = datetime(2024, 4, 30, 1, 1, 8, 883423, tzinfo=UTC).timestamp()


def sign(body: bytes, secret: str = SECRET) -> str:
    return "v1=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


async def test_vector_verifies() -> None:
    """BT-S1 verifies with the secret's UTF-8 bytes as the key."""
    await provider("baseten", secret=SECRET).verify({"x-baseten-signature": SIGNATURE}, BODY, NOW)


@pytest.mark.parametrize(
    "header",
    [
        f"v1=00ff,{SIGNATURE}",
        f"{SIGNATURE},v1=00ff",
        f"{SIGNATURE}, v1=00ff",
        SIGNATURE.upper().replace("V1=", "v1="),
    ],
)
async def test_rotation_header_verifies(header: str) -> None:
    """During a rotation Baseten sends `v1=new,v1=old`: any entry matching verifies (hex in any case)."""
    await provider("baseten", secret=SECRET).verify({"x-baseten-signature": header}, BODY, NOW)


async def test_rotated_secrets_in_config_verify() -> None:
    """secret as a list: the old and the new secret both verify."""
    await provider("baseten", secret=["whsec_new", SECRET]).verify(
        {"x-baseten-signature": SIGNATURE}, BODY, NOW
    )


@pytest.mark.parametrize(
    ("headers", "body", "now", "code"),
    [
        ({}, BODY, NOW, "missing_signature"),
        ({"x-baseten-signature": SIGNATURE[3:]}, BODY, NOW, "bad_signature"),
        ({"x-baseten-signature": sign(BODY, "whsec_other")}, BODY, NOW, "bad_signature"),
        ({"x-baseten-signature": SIGNATURE}, BODY.replace(b"hello", b"howdy"), NOW, "bad_signature"),
        ({"x-baseten-signature": SIGNATURE}, BODY, NOW + 301, "stale_timestamp"),
        ({"x-baseten-signature": SIGNATURE}, BODY, NOW - 301, "stale_timestamp"),
    ],
    ids=["missing header", "no v1=", "wrong secret", "tampered", "stale", "future"],
)
async def test_refusals_name_the_check(headers: dict[str, str], body: bytes, now: float, code: str) -> None:
    """Missing or wrong signature, tampering, and a result time beyond the tolerance: 401 naming the check."""
    with pytest.raises(Unauthorized) as err:
        await provider("baseten", secret=SECRET).verify(headers, body, now)
    assert err.value.code == code


@pytest.mark.parametrize("time", [None, "yesterday", "2024-04-30T01:01:08"])
async def test_result_without_a_zoned_time_is_refused(time: str | None) -> None:
    """A signed result without an ISO time with a zone at /time cannot be checked for freshness: 401."""
    body = orjson.dumps({"request_id": "r", "time": time, "errors": []})
    with pytest.raises(Unauthorized) as err:
        await provider("baseten", secret=SECRET).verify({"x-baseten-signature": sign(body)}, body, NOW)
    assert err.value.code == "bad_timestamp"


async def test_signed_malformed_body_is_left_to_parse() -> None:
    """An authentic body that is not JSON passes verify; parse answers 400 malformed_json."""
    source = provider("baseten", secret=SECRET)
    await source.verify({"x-baseten-signature": sign(b"{")}, b"{", NOW)
    with pytest.raises(BadRequest):
        source.parse({}, b"{")


def test_success_and_failure_by_errors() -> None:
    """Empty errors: succeeded with data as the result; non-empty: failed with the errors as text."""
    source = provider("baseten", secret=SECRET)
    ok = source.parse({}, BODY)
    assert (ok.job_id, ok.status, ok.result, ok.error) == (
        "9876543210abcdef1234567890fedcba",
        Status.SUCCEEDED,
        {"my_model_output": "hello world!"},
        None,
    )
    assert ok.delivery_id == "9876543210abcdef1234567890fedcba"
    failed_body = orjson.loads(BODY) | {
        "data": None,
        "errors": [{"code": "MODEL_PREDICT_ERROR", "message": "boom"}],
    }
    failed = source.parse({}, orjson.dumps(failed_body))
    assert (
        failed.status == Status.FAILED and failed.error == '[{"code":"MODEL_PREDICT_ERROR","message":"boom"}]'
    )


def test_secret_is_required() -> None:
    """A baseten source without a secret is a config error naming the key."""
    with pytest.raises(ConfigError, match=r"sources\.src\.secret"):
        provider("baseten")
