"""Subscriptions: list, create (the secret shown once), enable or disable, rotate the secret, delete. Each
change is checked by the API's own rules (relay/routes/subscriptions.py)."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from relay.errors import BadRequest, NotFound
from relay.outbox_models import EVENT_TYPES, Subscription, SubscriptionChange
from relay.routes.common import services
from relay.routes.subscriptions import rotate as rotate_secret
from relay.routes.subscriptions import subscribe, unsubscribe
from relay.ui.guard import signed_in
from relay.ui.rendering import base_path, render, see_other

__all__ = ["create", "delete", "rotate", "set_enabled", "subscriptions_list"]


async def _page(request: Request, shown: Subscription | None = None, status: int = 200) -> Response:
    """The list; `shown` is a subscription whose new secret is shown, this once."""
    svc = services(request)
    values: dict[str, Any] = {
        "active": "subscriptions",
        "subscriptions": await svc.store.list_subscriptions(),
        "sources": sorted(svc.settings.sources),
        "event_types": sorted(EVENT_TYPES),
        "shown": shown,
    }
    return render(request, "subscriptions.html", values, status)


@signed_in
async def subscriptions_list(request: Request) -> Response:
    return await _page(request)


@signed_in
async def create(request: Request) -> Response:
    """Subscribe a URL to a source (or all) and some events (or the final ones); its secret is shown once."""
    form = request.state.form
    url = form.one("url").strip()
    if not url:
        raise BadRequest("a URL to deliver to is required", "bad_url")
    subscription = await subscribe(
        services(request), url, form.one("source") or None, form.get("events") or None
    )
    return await _page(request, subscription, 201)


@signed_in
async def set_enabled(request: Request) -> Response:
    """Enable or disable (as a 410 would: unsent deliveries are given up), as `PATCH` with `enabled`."""
    svc = services(request)
    enabled = request.state.form.one("enabled") == "true"
    sub_id = request.path_params["id"]
    if await svc.store.update_subscription(sub_id, SubscriptionChange(enabled=enabled), svc.clock()) is None:
        raise NotFound(f"no subscription {sub_id!r}", "unknown_subscription")
    return see_other(f"{base_path(request)}/subscriptions")


@signed_in
async def rotate(request: Request) -> Response:
    """A new secret, shown once; the old one keeps signing for a day, as through the API."""
    subscription = await rotate_secret(services(request), request.path_params["id"])
    return await _page(request, subscription)


@signed_in
async def delete(request: Request) -> Response:
    await unsubscribe(services(request), request.path_params["id"])
    return see_other(f"{base_path(request)}/subscriptions")
