"""`GET /openapi.json`: the public API as OpenAPI 3.1, written by hand in relay/openapi.yaml (shipped in the
package) and kept true by the tests (tests/integration/test_openapi*.py)."""

from __future__ import annotations

import functools
from importlib import resources
from typing import Any

import yaml
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from relay import __version__
from relay.jsoncodec import dumps

__all__ = ["document", "routes"]


@functools.cache
def document() -> dict[str, Any]:
    """The document, read once per process, with `info.version` relay's own."""
    text = resources.files("relay").joinpath("openapi.yaml").read_text(encoding="utf-8")
    # libyaml's parser where it is built; a safe loader either way.
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    doc: dict[str, Any] = yaml.load(text, Loader=loader)
    doc["info"]["version"] = __version__
    return doc


@functools.cache
def _encoded() -> bytes:
    return dumps(document())


async def openapi_json(request: Request) -> Response:
    """The document; it needs no API key, so that client generators and schemathesis can read it."""
    return Response(_encoded(), media_type="application/json")


routes = [Route("/openapi.json", openapi_json, methods=["GET"])]
