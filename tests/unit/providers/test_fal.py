"""fal: ed25519 over request ID, user ID, timestamp and body hash, keys from a JWKS served on loopback."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from relay.errors import BadRequest, ConfigError, ServiceUnavailable, Unauthorized
from relay.models import Status
from relay.providers.fal import DEFAULT_JWKS_URL, Fal
from tests.unit.providers.support import FIXTURE_KEY, JwksServer, fal_body, fal_headers, jwk, provider, source

# providers.md 8.2, FAL-S1 (self-generated with the fixture key; fal publishes no vector).
S1_BODY = (
    b'{"request_id": "5057fca7-2eb3-468f-b95d-cefe92b0b9d4", "gateway_request_id": '
    b'"5057fca7-2eb3-468f-b95d-cefe92b0b9d4", "status": "OK", "payload": {"seed": 42}, "error": null}'
)
S1_HEADERS = {
    "x-fal-webhook-request-id": "5057fca7-2eb3-468f-b95d-cefe92b0b9d4",
    "x-fal-webhook-user-id": "user-123",
    "x-fal-webhook-timestamp": "1752019770",
    "x-fal-webhook-signature": (
        "58a519edafddcad8e9a88a0b66b9e2d1e876afc27623ac996b3cbde1b40a41ad"
        "383d1b775000420b84304ea513f7afff4276b5c8ad75262f2680915916ef5404"
    ),
}
S1_NOW = 1752019770.0
NOW = 1_800_000_000.0


@pytest.fixture
async def jwks() -> AsyncIterator[JwksServer]:
    """A JWKS server publishing the fixture key."""
    async with JwksServer(FIXTURE_KEY) as server:
        yield server


def fal(jwks: JwksServer) -> Fal:
    src = provider("fal", jwks_url=jwks.url)
    assert isinstance(src, Fal)
    return src


def signed(
    body: bytes | None = None, key: Ed25519PrivateKey = FIXTURE_KEY, **kw: Any
) -> tuple[dict[str, str], bytes]:
    """Headers and body of a fal callback signed with `key` at NOW (unless `timestamp` is given)."""
    body = fal_body() if body is None else body
    return fal_headers(key, body, timestamp=int(kw.pop("timestamp", NOW)), **kw), body


async def test_published_style_vector_verifies(jwks: JwksServer) -> None:
    """FAL-S1: the fixture-key vector verifies, fetching the JWKS once."""
    await fal(jwks).verify(S1_HEADERS, S1_BODY, S1_NOW)
    assert jwks.requests == 1


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"x-fal-webhook-signature": S1_HEADERS["x-fal-webhook-signature"][:-1] + "5"}, "no key"),
        ({"x-fal-webhook-user-id": "user-124"}, "no key"),
        ({"x-fal-webhook-request-id": "5057fca7-2eb3-468f-b95d-cefe92b0b9d5"}, "no key"),
        ({"x-fal-webhook-signature": "zz" * 64}, "not hex"),
        ({"x-fal-webhook-signature": "ab" * 32}, "not 64 bytes"),
    ],
)
async def test_any_changed_header_is_refused(jwks: JwksServer, change: dict[str, str], message: str) -> None:
    """Each signed header takes part: changing one (or a malformed signature) is 401 bad_signature."""
    with pytest.raises(Unauthorized) as err:
        await fal(jwks).verify({**S1_HEADERS, **change}, S1_BODY, S1_NOW)
    assert err.value.code == "bad_signature" and message in err.value.message


async def test_tampered_body_is_refused(jwks: JwksServer) -> None:
    """One byte more in the body changes its hash: 401 bad_signature."""
    with pytest.raises(Unauthorized) as err:
        await fal(jwks).verify(S1_HEADERS, S1_BODY + b" ", S1_NOW)
    assert err.value.code == "bad_signature"


@pytest.mark.parametrize(
    ("header", "code"),
    [
        ("x-fal-webhook-request-id", "missing_header"),
        ("x-fal-webhook-user-id", "missing_header"),
        ("x-fal-webhook-timestamp", "missing_timestamp"),
        ("x-fal-webhook-signature", "missing_signature"),
    ],
)
async def test_missing_header_is_named(jwks: JwksServer, header: str, code: str) -> None:
    """A missing X-Fal-Webhook-* header: 401 naming it."""
    headers = {k: v for k, v in S1_HEADERS.items() if k != header}
    with pytest.raises(Unauthorized) as err:
        await fal(jwks).verify(headers, S1_BODY, S1_NOW)
    assert err.value.code == code
    assert code == "missing_timestamp" or header in err.value.message


@pytest.mark.parametrize("skew", [-301, 301])
async def test_stale_and_future_timestamps_are_refused(jwks: JwksServer, skew: int) -> None:
    """fal's tolerance is 300 s either way: beyond it, 401 stale_timestamp."""
    with pytest.raises(Unauthorized) as err:
        await fal(jwks).verify(S1_HEADERS, S1_BODY, S1_NOW + skew)
    assert err.value.code == "stale_timestamp"
    await fal(jwks).verify(S1_HEADERS, S1_BODY, S1_NOW + skew - (1 if skew > 0 else -1))


async def test_signature_by_an_unpublished_key_is_refused(jwks: JwksServer) -> None:
    """Signed with a key the JWKS does not publish: 401 bad_signature."""
    headers, body = signed(key=Ed25519PrivateKey.generate())
    with pytest.raises(Unauthorized) as err:
        await fal(jwks).verify(headers, body, NOW)
    assert err.value.code == "bad_signature"


async def test_every_published_key_is_tried(jwks: JwksServer) -> None:
    """The signature names no key: a JWKS of several keys verifies with whichever signed."""
    second = Ed25519PrivateKey.generate()
    jwks.keys = [
        {"kty": "RSA", "n": "x", "e": "AQAB"},
        *jwks.keys,
        {"kty": "OKP", "crv": "Ed25519", "x": "!"},
    ]
    jwks.keys.append(jwk(second))
    source_ = fal(jwks)
    await source_.verify(*signed(), NOW)
    await source_.verify(*signed(key=second), NOW)


async def test_keys_are_cached_for_a_day(jwks: JwksServer) -> None:
    """One fetch serves every callback for 24 h; the next one after that fetches again."""
    source_ = fal(jwks)
    for offset in (0, 60, 3600, 86_399):
        await source_.verify(*signed(timestamp=NOW + offset), NOW + offset)
    assert jwks.requests == 1
    await source_.verify(*signed(timestamp=NOW + 86_400), NOW + 86_400)
    assert jwks.requests == 2


async def test_rotated_key_is_fetched_at_most_once_a_minute(jwks: JwksServer) -> None:
    """fal rotates: an unknown signer refetches the JWKS, but not more than once a minute."""
    source_ = fal(jwks)
    await source_.verify(*signed(), NOW)
    rotated = Ed25519PrivateKey.generate()
    jwks.keys = [jwk(rotated)]
    with pytest.raises(Unauthorized):  # within a minute of the first fetch: no refetch yet
        await source_.verify(*signed(key=rotated, timestamp=NOW + 30), NOW + 30)
    assert jwks.requests == 1
    await source_.verify(*signed(key=rotated, timestamp=NOW + 61), NOW + 61)
    assert jwks.requests == 2
    for offset in (62, 90, 120, 121):  # forgeries (the retired key) refetch once a minute at most
        with pytest.raises(Unauthorized):
            await source_.verify(*signed(timestamp=NOW + offset), NOW + offset)
    assert jwks.requests == 3  # the one at +121 s, a minute after the fetch at +61 s


async def test_unreachable_jwks_is_503_and_retried_a_minute_later(jwks: JwksServer) -> None:
    """No keys to verify with: 503 jwks_unavailable (fal retries), and the fetch is retried after a minute."""
    jwks.status = 500
    source_ = fal(jwks)
    for offset in (0, 59):
        with pytest.raises(ServiceUnavailable) as err:
            await source_.verify(*signed(timestamp=NOW + offset), NOW + offset)
        assert err.value.code == "jwks_unavailable"
    assert jwks.requests == 1
    jwks.status = 200
    await source_.verify(*signed(timestamp=NOW + 60), NOW + 60)
    assert jwks.requests == 2


async def test_expired_keys_are_not_trusted_when_refetch_fails(jwks: JwksServer) -> None:
    """After 24 h the cached keys are dropped; if fal's JWKS cannot be fetched then, 503 until it can."""
    source_ = fal(jwks)
    await source_.verify(*signed(), NOW)
    jwks.status = 503
    later = NOW + 86_400
    with pytest.raises(ServiceUnavailable):
        await source_.verify(*signed(timestamp=later), later)


async def test_unreachable_host_is_503() -> None:
    """A JWKS URL where nothing listens: 503, not a crash."""
    async with JwksServer() as server:
        url = server.url
    source_ = provider("fal", jwks_url=url)
    with pytest.raises(ServiceUnavailable):
        await source_.verify(*signed(), NOW)


@pytest.mark.parametrize("url", ["http://", "http://[::1"])
async def test_malformed_jwks_url_is_503(url: str) -> None:
    """A JWKS URL httpx cannot use: 503 jwks_unavailable, not a crash."""
    with pytest.raises(ServiceUnavailable):
        await provider("fal", jwks_url=url).verify(*signed(), NOW)


def test_default_jwks_url_and_bad_one() -> None:
    """The default is fal's published JWKS; a URL that is not http(s) is a config error naming the key."""
    assert source("fal").options["jwks_url"] == DEFAULT_JWKS_URL
    with pytest.raises(ConfigError, match=r"sources\.src\.jwks_url"):
        provider("fal", jwks_url="file:///etc/passwd")


def test_ok_is_succeeded_with_the_payload() -> None:
    """status OK: succeeded, result = payload, dedupe key = request ID + status."""
    callback = provider("fal").parse({}, fal_body())
    assert callback.job_id == "5057fca7-2eb3-468f-b95d-cefe92b0b9d4" and callback.status == Status.SUCCEEDED
    assert callback.result == {"images": [{"url": "https://url.to/image.png"}], "seed": 42}
    assert callback.error is None and callback.delivery_id == "5057fca7-2eb3-468f-b95d-cefe92b0b9d4:OK"


def test_error_is_failed_with_fal_s_message() -> None:
    """status ERROR (fal's documented 422 example): failed, error = fal's message, details in result."""
    detail = {"detail": [{"loc": ["body", "prompt"], "msg": "field required", "type": "value_error.missing"}]}
    body = fal_body(request_id="r-err", status="ERROR", error="Invalid status code: 422", payload=detail)
    callback = provider("fal").parse({}, body)
    assert callback.status == Status.FAILED and callback.error == "Invalid status code: 422"
    assert callback.result == detail and callback.delivery_id == "r-err:ERROR"


def test_payload_error_is_reported() -> None:
    """An output that could not be serialized: payload null, payload_error shown as the error."""
    body = fal_body(payload=None, payload_error="Object of type bytes is not JSON serializable")
    callback = provider("fal").parse({}, body)
    assert callback.status == Status.SUCCEEDED and callback.result is None
    assert callback.error == "Object of type bytes is not JSON serializable"


@pytest.mark.parametrize(
    ("body", "code"),
    [
        (b'{"status": "OK"}', "missing_job_id"),
        (b'{"request_id": "r", "status": "COMPLETED"}', "unknown_status"),
        (b'{"request_id": "r"}', "missing_status"),
        (b"[]", "malformed_json"),
    ],
)
def test_unusable_bodies_are_400(body: bytes, code: str) -> None:
    """No request ID, a status other than OK/ERROR, or no object: 400 naming it."""
    with pytest.raises(BadRequest) as err:
        provider("fal").parse({}, body)
    assert err.value.code == code
