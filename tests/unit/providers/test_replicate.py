"""replicate: Standard Webhooks signatures; the prediction object's status, `aborted` included."""

from __future__ import annotations

import orjson
import pytest

from relay.errors import BadRequest, Unauthorized
from relay.models import Status
from tests.unit.providers.support import provider

# providers.md 8.1, SW-1 (also replicate-python's own test vector).
SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
HEADERS = {
    "webhook-id": "msg_p5jXN8AQM9LWM0D4loKWxJek",
    "webhook-timestamp": "1614265330",
    "webhook-signature": "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=",
}


def prediction(status: str, **fields: object) -> bytes:
    """A prediction object as Replicate's webhooks send it (the GET prediction shape)."""
    return orjson.dumps(
        {
            "id": "ufawqhfynnddngldkgtslldrkq",
            "model": "black-forest-labs/flux-schnell",
            "version": "dp-4d0bcc010b3049749a251855f12800be",
            "input": {"prompt": "Alice"},
            "logs": "",
            "output": None,
            "error": None,
            "status": status,
            "created_at": "2024-02-06T18:43:14.232Z",
            "urls": {"get": "https://api.replicate.com/v1/predictions/ufawqhfynnddngldkgtslldrkq"},
            **fields,
        }
    )


async def test_vector_verifies() -> None:
    """SW-1 (replicate-python's test vector) verifies with Replicate's one secret."""
    await provider("replicate", secret=SECRET).verify(HEADERS, b'{"test": 2432232314}', 1614265330)


async def test_tampered_body_is_refused() -> None:
    """The raw body is signed: re-serialised JSON is 401 bad_signature."""
    with pytest.raises(Unauthorized) as err:
        await provider("replicate", secret=SECRET).verify(HEADERS, b'{"test":2432232314}', 1614265330)
    assert err.value.code == "bad_signature"


@pytest.mark.parametrize(
    ("status", "fields", "expected", "error"),
    [
        ("starting", {}, Status.RUNNING, None),
        ("processing", {"logs": "Using seed: 1\n0%|"}, Status.RUNNING, None),
        ("processing", {"output": ["https://replicate.delivery/a.webp"]}, Status.RUNNING, None),
        (
            "succeeded",
            {"output": ["https://replicate.delivery/a.webp"], "metrics": {"predict_time": 1.2}},
            Status.SUCCEEDED,
            None,
        ),
        ("failed", {"error": "CUDA out of memory"}, Status.FAILED, "CUDA out of memory"),
        ("canceled", {}, Status.CANCELED, None),
        ("aborted", {}, Status.CANCELED, None),  # the Cancel-After deadline passed before it started
    ],
)
def test_lifecycle_statuses(
    status: str, fields: dict[str, object], expected: Status, error: str | None
) -> None:
    """start, output/logs and completed events: running or a final status; the result is the prediction."""
    body = prediction(status, **fields)
    callback = provider("replicate", secret=SECRET).parse({"webhook-id": "msg_1"}, body)
    assert callback.job_id == "ufawqhfynnddngldkgtslldrkq" and callback.status == expected
    assert callback.error == error and callback.result == orjson.loads(body)
    assert callback.delivery_id == "msg_1"


def test_unknown_status_is_400() -> None:
    """A status outside Replicate's lifecycle is 400 unknown_status, so Replicate retries."""
    with pytest.raises(BadRequest) as err:
        provider("replicate", secret=SECRET).parse({"webhook-id": "m"}, prediction("exploded"))
    assert err.value.code == "unknown_status"
