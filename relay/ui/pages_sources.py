"""Sources: each one's kind, its webhook URL, and its callbacks of the last hour by outcome and reason."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from relay.routes.common import services
from relay.ui.callback_window import CallbackWindow, Counts
from relay.ui.guard import signed_in
from relay.ui.rendering import render

__all__ = ["sources_list"]


def _by_source(counts: Counts) -> dict[str, dict[str, Any]]:
    """Per source: accepted, duplicate, and rejected by reason (zeros left out)."""
    found: dict[str, dict[str, Any]] = defaultdict(lambda: {"accepted": 0, "duplicate": 0, "rejected": {}})
    for (source, outcome, reason), value in counts.items():
        if value <= 0:
            continue
        if outcome == "rejected":
            found[source]["rejected"][reason] = int(value)
        else:
            found[source][outcome] = found[source].get(outcome, 0) + int(value)
    return found


@signed_in
async def sources_list(request: Request) -> Response:
    svc = services(request)
    window = next((loop for loop in svc.loops if isinstance(loop, CallbackWindow)), None)
    since, counts = window.last_hour(svc.clock()) if window else (None, {})
    by_source = _by_source(counts)
    sources = [
        {
            "name": name,
            "kind": config.kind,
            "webhook_url": svc.webhook_url(name),
            "timeout_s": config.timeout_s,
            "callbacks": by_source.get(name, {"accepted": 0, "duplicate": 0, "rejected": {}}),
        }
        for name, config in sorted(svc.settings.sources.items())
    ]
    values = {"active": "sources", "sources": sources, "since": since, "unknown": by_source.get("_unknown")}
    return render(request, "sources.html", values)
