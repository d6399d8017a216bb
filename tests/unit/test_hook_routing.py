"""The callback fast path matches exactly the requests Starlette's hook routes would."""

from __future__ import annotations

import pytest
from starlette.routing import Match

from relay.routes.hooks import hook_params, routes

PATHS = [
    "/hooks/demo",
    "/hooks/demo/tok",
    "/hooks/demo/",
    "/hooks/",
    "/hooks",
    "/hooks//tok",
    "/hooks/demo/tok/more",
    "/hooks/dé mo",
    "/v1/jobs/demo/1",
    "/hooksdemo",
]


def _starlette(scope: dict[str, object]) -> dict[str, str] | None:
    for route in routes:
        match, child = route.matches(scope)
        if match is Match.FULL:
            return dict(child["path_params"])
    return None


@pytest.mark.parametrize("method", ["POST", "GET"])
@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("root_path", ["", "/relay"])
def test_fast_path_matches_the_routes(method: str, path: str, root_path: str) -> None:
    """Same params as the routes for every POST they take, None for everything else."""
    scope = {"type": "http", "method": method, "path": root_path + path, "root_path": root_path}
    assert hook_params(scope) == _starlette(scope)
