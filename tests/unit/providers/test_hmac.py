"""hmac: a configurable HMAC of the body in a header, GitHub's published vector, timestamps, encodings."""

from __future__ import annotations

import base64
import hashlib
import hmac
from typing import Any

import pytest

from relay.errors import ConfigError, Unauthorized
from relay.models import Status
from tests.unit.providers.support import provider

# GitHub's documented test values ("Validating webhook deliveries").
GH_SECRET = "It's a Secret to Everybody"
GH_BODY = b"Hello, World!"
GH_SIGNATURE = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"
GITHUB = {"header": "X-Hub-Signature-256", "prefix": "sha256=", "secret": GH_SECRET}
NOW = 1_700_000_000


def mac(content: bytes, secret: str = "s3cret", algorithm: str = "sha256") -> bytes:
    return hmac.new(secret.encode(), content, getattr(hashlib, algorithm)).digest()


async def test_github_vector_verifies() -> None:
    """GitHub's published vector verifies with header X-Hub-Signature-256 and prefix sha256=."""
    await provider("hmac", **GITHUB).verify({"x-hub-signature-256": GH_SIGNATURE}, GH_BODY, NOW)


@pytest.mark.parametrize(
    ("signature", "body", "code"),
    [
        (GH_SIGNATURE, b"Hello, World?", "bad_signature"),
        (GH_SIGNATURE.replace("sha256=", "sha1="), GH_BODY, "bad_signature"),
        (GH_SIGNATURE[:-1] + "8", GH_BODY, "bad_signature"),
        ("sha256=" + "0" * 64, GH_BODY, "bad_signature"),
        ("sha256=zz", GH_BODY, "bad_signature"),
        (None, GH_BODY, "missing_signature"),
    ],
)
async def test_github_style_refusals(signature: str | None, body: bytes, code: str) -> None:
    """Tampered body, another prefix, a changed digit, garbage or no header: 401 naming the check."""
    headers = {} if signature is None else {"x-hub-signature-256": signature}
    with pytest.raises(Unauthorized) as err:
        await provider("hmac", **GITHUB).verify(headers, GH_BODY if body is None else body, NOW)
    assert err.value.code == code


@pytest.mark.parametrize(
    ("table", "signature"),
    [
        ({"algorithm": "sha1", "prefix": "sha1="}, "sha1=" + mac(b"{}", algorithm="sha1").hex()),
        ({"encoding": "base64"}, base64.b64encode(mac(b"{}")).decode()),
        ({}, "a=1, " + mac(b"{}").hex() + " " + "00" * 32),
        ({"secret": ["old", "s3cret"]}, mac(b"{}").hex()),
    ],
    ids=["sha1", "base64", "several entries", "rotated secrets"],
)
async def test_configurable_forms_verify(table: dict[str, Any], signature: str) -> None:
    """SHA-1, base64, several entries in the header and a list of secrets all verify."""
    config = {"header": "X-Signature", "secret": "s3cret", **table}
    await provider("hmac", **config).verify({"x-signature": signature}, b"{}", NOW)


SLACK_STYLE = {
    "header": "X-Slack-Signature",
    "prefix": "v0=",
    "timestamp_header": "X-Slack-Request-Timestamp",
    "signed_payload": "v0:{timestamp}:{body}",
    "secret": "s3cret",
}


def slack_headers(timestamp: int, body: bytes) -> dict[str, str]:
    signature = "v0=" + mac(b"v0:%d:%s" % (timestamp, body)).hex()
    return {"x-slack-signature": signature, "x-slack-request-timestamp": str(timestamp)}


async def test_timestamp_is_signed_and_checked() -> None:
    """With timestamp_header the timestamp is part of the signed payload and must be within tolerance."""
    source = provider("hmac", **SLACK_STYLE)
    await source.verify(slack_headers(NOW, b"{}"), b"{}", NOW)
    replayed = {**slack_headers(NOW, b"{}"), "x-slack-request-timestamp": str(NOW + 10)}
    with pytest.raises(Unauthorized) as err:
        await source.verify(replayed, b"{}", NOW + 10)
    assert err.value.code == "bad_signature"
    for now, code in ((NOW + 301, "stale_timestamp"), (NOW - 301, "stale_timestamp")):
        with pytest.raises(Unauthorized) as err:
            await source.verify(slack_headers(NOW, b"{}"), b"{}", now)
        assert err.value.code == code
    with pytest.raises(Unauthorized) as err:
        await source.verify({"x-slack-signature": "v0=00"}, b"{}", NOW)
    assert err.value.code == "missing_timestamp"


async def test_default_payload_with_a_timestamp_is_timestamp_dot_body() -> None:
    """timestamp_header without signed_payload signs `{timestamp}.{body}`."""
    source = provider("hmac", header="X-Sig", timestamp_header="X-Ts", secret="s3cret")
    headers = {"x-sig": mac(b"%d.{}" % NOW).hex(), "x-ts": str(NOW)}
    await source.verify(headers, b"{}", NOW)


@pytest.mark.parametrize(
    ("table", "named"),
    [
        ({}, "header"),
        ({"header": "X-Sig", "algorithm": "md5"}, "algorithm"),
        ({"header": "X-Sig", "encoding": "hexadecimal"}, "encoding"),
        ({"header": "X-Sig", "signed_payload": "{timestamp}"}, "signed_payload"),
        ({"header": "X-Sig", "timestamp_header": "X-Ts", "signed_payload": "{body}"}, "signed_payload"),
        ({"header": 5}, "header"),
    ],
)
def test_bad_config_names_the_key(table: dict[str, Any], named: str) -> None:
    """No header name, an unknown algorithm or encoding, or a payload that signs too little: config error."""
    with pytest.raises(ConfigError, match=rf"sources\.src\.{named}"):
        provider("hmac", secret="s3cret", **table)


def test_parse_uses_id_header_or_derives_one() -> None:
    """The delivery ID comes from id_header when set (GitHub's X-GitHub-Delivery), else job + status."""
    with_id = provider("hmac", header="X-Sig", secret="s", id_header="X-GitHub-Delivery")
    body = b'{"id": "j1", "status": "done", "error": null}'
    assert with_id.parse({"x-github-delivery": "d-1"}, body).delivery_id == "d-1"
    callback = provider("hmac", header="X-Sig", secret="s").parse({}, body)
    assert (callback.job_id, callback.status, callback.delivery_id) == ("j1", Status.SUCCEEDED, "j1:done")
