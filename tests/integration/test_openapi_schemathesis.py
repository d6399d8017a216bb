"""schemathesis against the live app (lifespan running, SQLite in a temp folder, a real API key): every
operation of `GET /openapi.json`, with answers that are never a 5xx and match the document in status, media
type and body. Response objects are checked closed (no field the document does not name)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import orjson
import pytest
import schemathesis
from schemathesis.python import asgi
from starlette.applications import Starlette

from relay.app import create_app
from relay.openapi import document
from tests.conftest import API_KEY, DEMO_SECRET, REPLICATE_SECRET, make_settings, signed_headers
from tests.integration.test_openapi import closed

AUTH = {"Authorization": f"Bearer {API_KEY}"}
CHECKS = [
    schemathesis.checks.not_a_server_error,
    schemathesis.checks.response_schema_conformance,
    schemathesis.checks.status_code_conformance,
    schemathesis.checks.content_type_conformance,
]
MAX_EXAMPLES = 25
# A job's event stream ends only after a final state; one that never comes is cut at this bound.
STREAM_READ_S = 0.05
SIGNING_SECRET = "whsec_" + "A" * 32


def _seed(app: Starlette) -> None:
    """What the document's examples name: job `abc` of `replicate`, finished, with its history, events and a
    delivery (`dlv_1`) to its own subscriber; also a subscription."""
    with asgi.get_client(cast(asgi.ASGIApp, app)) as client:  # Starlette's scope type is the wider Mapping
        client.headers.update(AUTH)
        registered = client.post(
            "/v1/jobs",
            json={"source": "replicate", "job_id": "abc", "subscribers": ["http://127.0.0.1:9/hook"]},
        )
        assert registered.status_code == 201, registered.text
        for status in ("processing", "succeeded"):
            payload = orjson.dumps({"id": "abc", "status": status, "output": ["https://example.com/a.png"]})
            answer = client.post(
                "/hooks/replicate", data=payload, headers=signed_headers(REPLICATE_SECRET, payload)
            )
            assert answer.status_code == 200, answer.text
        subscribed = client.post("/v1/subscriptions", json={"url": "https://example.com/hook"})
        assert subscribed.status_code == 201, subscribed.text
        assert client.get("/v1/deliveries/dlv_1").status_code == 200


# Built from the shipped document at collection (no app yet); tests/integration/test_openapi.py checks that
# the app serves exactly this document.
schema = schemathesis.openapi.from_dict(closed(document()))
schema.config.generation.update(
    max_examples=MAX_EXAMPLES, deterministic=True, database="none", with_security_parameters=False
)


@pytest.fixture(scope="module")
def relay_app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Starlette]:
    """The app on SQLite in a temp folder, its lifespan started on schemathesis' loop, with data seeded."""
    folder: Path = tmp_path_factory.mktemp("openapi")
    settings = make_settings(
        folder,
        max_wait_s=0.05,  # schemathesis asks for long waits: they are refused (400) past this, held below it
        sse_heartbeat_s=0.02,
        signing_secret=SIGNING_SECRET,
        allow_private_destinations=True,  # no DNS look-ups for generated subscriber URLs
        sources={
            "demo": {"kind": "standard-webhooks", "secret": DEMO_SECRET},
            "replicate": {"kind": "replicate", "secret": REPLICATE_SECRET},
            "runpod": {"kind": "runpod"},
        },
    )
    app = create_app(settings, background=False)  # no deliverer: generated URLs are never called
    try:
        _seed(app)
        yield app
    finally:
        asgi.shutdown_lifespans()


@schema.parametrize()
def test_every_operation_answers_as_documented(case: schemathesis.Case[Any], relay_app: Starlette) -> None:
    """No 5xx; every answer's status, media type and body are the ones the document gives its operation."""
    streaming = case.operation.path.endswith("/events")
    response = case.call_and_validate(
        app=relay_app, headers=AUTH, checks=CHECKS, timeout=STREAM_READ_S if streaming else 10
    )
    if case.operation.path.startswith("/hooks/"):  # schemathesis cannot sign: no callback of its is taken
        assert 400 <= response.status_code < 500, response.text
