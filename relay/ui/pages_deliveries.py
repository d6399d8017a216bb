"""Deliveries: the list (by status, source, subscription, job), each with its attempts and a Retry button."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import HTMLResponse, Response

from relay.outbox_models import Delivery
from relay.routes.common import page, services
from relay.routes.deliveries import DeliveryFilters, deliveries_page, delivery_of, retry
from relay.ui.guard import signed_in
from relay.ui.rendering import base_path, is_htmx, query, render, render_fragment, see_other

__all__ = ["deliveries_list", "delivery_item", "retry_item"]

# The statuses as an operator names them: `retrying` is a delivery that is failing.
STATUS_LABELS = {
    "pending": "pending",
    "delivering": "delivering",
    "retrying": "failing (retrying)",
    "delivered": "delivered",
    "dead": "dead",
}


def _common(request: Request) -> dict[str, Any]:
    return {"active": "deliveries", "labels": STATUS_LABELS}


@signed_in
async def deliveries_list(request: Request) -> Response:
    """Deliveries newest first, filtered as the API's list is, with a link to the next page."""
    svc = services(request)
    chosen = DeliveryFilters.of(request)
    limit, before = page(request)
    deliveries, cursor = await deliveries_page(svc, chosen, limit, before)
    filters = {
        "status": chosen.status.value if chosen.status else "",
        "source": chosen.source or "",
        "subscription_id": chosen.subscription_id or "",
        "job_id": chosen.job_id or "",
    }
    values = {
        **_common(request),
        "deliveries": deliveries,
        "filters": filters,
        "sources": sorted(svc.settings.sources),
        "subscriptions": await svc.store.list_subscriptions(),
        "next_page": query({**filters, "cursor": cursor}) if cursor else None,
        "back": request.url.path + (f"?{request.url.query}" if request.url.query else ""),
    }
    return render(request, "deliveries.html", values)


def _item(request: Request, delivery: Delivery, back: str) -> Response:
    """A delivery's card, refreshing itself while on its way (after a Retry: the operator watches it)."""
    values = {**_common(request), "d": delivery, "back": back, "watch": True}
    html = render_fragment(request, "delivery.html", values)
    return HTMLResponse(html, headers={"cache-control": "no-store"})


@signed_in
async def delivery_item(request: Request) -> Response:
    """One delivery: its card (htmx refreshes a card while it is on its way), or a page holding it."""
    delivery = await delivery_of(services(request), request.path_params["id"])
    back = f"{base_path(request)}/deliveries"
    if is_htmx(request):
        return _item(request, delivery, back)
    return render(request, "deliveries_one.html", {**_common(request), "d": delivery, "back": back})


@signed_in
async def retry_item(request: Request) -> Response:
    """**Retry**: queue the delivery again (the API's rule), then show its new state."""
    svc = services(request)
    delivery = await retry(svc, await delivery_of(svc, request.path_params["id"]))
    back = request.state.form.one("back")
    if not back.startswith(f"{base_path(request)}/") or back.startswith("//"):
        back = f"{base_path(request)}/deliveries"
    if is_htmx(request):
        return _item(request, delivery, back)
    return see_other(back)
