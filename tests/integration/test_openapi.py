"""`GET /openapi.json`: served without a key, valid OpenAPI 3.1, and in step with the routes the app registers
(tests/integration/test_openapi_schemathesis.py checks the answers against it)."""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from typing import Any

import jsonschema_rs
import orjson
import pytest
import schemathesis
from starlette.routing import BaseRoute, Mount, Route

from relay import __version__
from relay.app import create_app
from relay.openapi import document
from relay.settings import Settings
from tests.conftest import REPLICATE_SECRET, Relay, signed_headers

pytestmark = pytest.mark.sqlite_only("the document does not depend on the backend")

_HTTP_METHODS = {"get", "put", "post", "delete", "options", "head", "patch", "trace"}
_CONVERTER = re.compile(r"\{(\w+)(?::\w+)?\}")  # Starlette's `{name:path}` is OpenAPI's `{name}`


def routed_operations(routes: Sequence[BaseRoute], prefix: str = "") -> Iterator[tuple[str, str]]:
    """(method, OpenAPI path) of every route, inside mounts too; the HEAD Starlette adds to a GET is left out
    (the document says once that every GET answers HEAD)."""
    for route in routes:
        if isinstance(route, Mount):
            if not route.routes:  # a mounted app (static files, a sub-app) has no routes to compare
                raise AssertionError(
                    f"{route!r}: mounted app without routes; describe it and teach this walk"
                )
            yield from routed_operations(route.routes, prefix + route.path)
        elif isinstance(route, Route):
            methods = route.methods or {"GET"}
            for method in methods - ({"HEAD"} if "GET" in methods else set()):
                yield method.lower(), _CONVERTER.sub(r"{\1}", prefix + route.path)
        else:  # a WebSocket route or anything else would need a description of its own first
            raise AssertionError(f"{route!r}: undocumentable route type")


def documented_operations(doc: dict[str, Any]) -> Iterator[tuple[str, str]]:
    for path, item in doc["paths"].items():
        for method in item.keys() & _HTTP_METHODS:
            yield method, path


def test_every_route_the_app_registers_is_documented_and_nothing_else(settings: Settings) -> None:
    """Each method and path the app routes has an operation in the document, and each operation a route."""
    # The dashboard (/ui) serves HTML pages to a signed-in browser: no API, so not in the document.
    api_routes = [r for r in create_app(settings).routes if getattr(r, "path", "") != "/ui"]
    routed = set(routed_operations(api_routes))
    documented = set(documented_operations(document()))
    assert routed - documented == set(), "routes the document does not describe"
    assert documented - routed == set(), "operations no route serves"


def test_a_route_added_without_a_description_is_found(settings: Settings) -> None:
    """The comparison above sees a new route, one inside a mount too, and a documented route gone."""

    async def endpoint() -> None: ...

    routes = [
        *(r for r in create_app(settings).routes if getattr(r, "path", "") != "/ui"),
        Route("/v1/jobs/{source}/{job_id:path}/pause", endpoint, methods=["POST"]),
        Mount("/v1/blobs", routes=[Route("/{id}", endpoint)]),
    ]
    routed = set(routed_operations(routes))
    documented = set(documented_operations(document()))
    assert routed - documented == {("post", "/v1/jobs/{source}/{job_id}/pause"), ("get", "/v1/blobs/{id}")}
    fewer = set(routed_operations([r for r in routes if getattr(r, "path", "") != "/healthz"]))
    assert documented - fewer == {("get", "/healthz")}


async def test_the_document_is_served_without_a_key_as_valid_openapi_3_1(relay: Relay) -> None:
    """`GET /openapi.json` needs no API key and answers the shipped document, which OpenAPI 3.1 validates."""
    async with relay.anonymous() as anonymous:
        response = await anonymous.get("/openapi.json")
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    served = response.json()
    assert served == document()
    assert served["openapi"].startswith("3.1.")
    assert served["info"]["version"] == __version__
    schemathesis.openapi.from_dict(served).validate()  # the OpenAPI 3.1 meta-schema
    assert set(_dangling_refs(served)) == set()


def _dangling_refs(node: Any, doc: dict[str, Any] | None = None) -> Iterator[str]:
    """Every local `$ref` that names nothing in the document."""
    doc = node if doc is None else doc
    if isinstance(node, dict):
        ref = node.get("$ref")
        if isinstance(ref, str):
            target: Any = doc
            for part in ref.removeprefix("#/").split("/"):
                target = target.get(part) if isinstance(target, dict) else None
            if target is None:
                yield ref
        for value in node.values():
            yield from _dangling_refs(value, doc)
    elif isinstance(node, list):
        for value in node:
            yield from _dangling_refs(value, doc)


def closed(node: Any) -> Any:
    """The document with every object schema that names its properties closed to others: a field the app
    answers but the document leaves out fails. (The served document leaves them open: new fields may come.)"""
    if isinstance(node, dict):
        node = {key: closed(value) for key, value in node.items()}
        if "properties" in node and "additionalProperties" not in node:
            node["additionalProperties"] = False
        return node
    if isinstance(node, list):
        return [closed(value) for value in node]
    return node


def assert_matches(doc: dict[str, Any], component: str, instance: Any) -> None:
    """`instance` is valid against the document's `components/schemas/<component>`, closed."""
    schema = {"$ref": f"#/components/schemas/{component}", "components": closed(doc["components"])}
    jsonschema_rs.Draft202012Validator(schema, validate_formats=True).validate(instance)


def _sse_messages(body: str) -> list[dict[str, str]]:
    """The stream's messages as field -> value (comment lines left out)."""
    messages = []
    for block in body.strip().split("\n\n"):
        fields = dict(line.split(": ", 1) for line in block.split("\n") if not line.startswith(":"))
        if fields:
            messages.append(fields)
    return messages


async def test_the_event_stream_matches_its_document_entry(relay: Relay) -> None:
    """The SSE answer of a finished job: its media type, and each message and its JSON data as documented."""
    registered = await relay.client.post("/v1/jobs", json={"source": "replicate", "job_id": "sse-doc"})
    assert registered.status_code == 201
    for status in ("processing", "succeeded"):
        payload = orjson.dumps({"id": "sse-doc", "status": status, "output": ["https://example.com/a.png"]})
        response = await relay.client.post(
            "/hooks/replicate", content=payload, headers=signed_headers(REPLICATE_SECRET, payload)
        )
        assert response.status_code == 200
    doc = document()
    operation = doc["paths"]["/v1/jobs/{source}/{job_id}/events"]["get"]
    response = await relay.client.get("/v1/jobs/replicate/sse-doc/events")
    assert response.status_code == 200
    documented_types = operation["responses"]["200"]["content"].keys()
    assert response.headers["content-type"].partition(";")[0] in documented_types
    messages = _sse_messages(response.text)
    assert [m["event"] for m in messages] == ["job.running", "job.succeeded"]
    for message in messages:
        assert_matches(doc, "ServerSentEvent", message)
        assert_matches(doc, "Event", orjson.loads(message["data"]))
