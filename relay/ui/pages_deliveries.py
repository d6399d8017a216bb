"""Deliveries: the list (by status, source, subscription, job), each with its attempts and a Retry button."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import HTMLResponse, Response

from relay.errors import NotFound
from relay.outbox_models import Delivery, DeliveryStatus
from relay.routes.common import next_cursor, page, row_id, services, status_filter
from relay.routes.deliveries import retry
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


async def _delivery(request: Request) -> Delivery:
    raw = request.path_params["id"]
    number = row_id(raw.removeprefix("dlv_"))
    delivery = None if number is None else await services(request).store.get_delivery(number)
    if delivery is None:
        raise NotFound(f"no delivery {raw!r}", "unknown_delivery")
    return delivery


def _common(request: Request) -> dict[str, Any]:
    return {"active": "deliveries", "labels": STATUS_LABELS}


@signed_in
async def deliveries_list(request: Request) -> Response:
    """Deliveries newest first, filtered as the API's list is, with a link to the next page."""
    svc = services(request)
    params = request.query_params
    status = status_filter(request, DeliveryStatus)
    limit, before = page(request)
    filters = {
        "status": status.value if status else "",
        "source": params.get("source") or "",
        "subscription_id": params.get("subscription_id") or "",
        "job_id": params.get("job_id") or "",
    }
    deliveries = await svc.store.list_deliveries(
        status=status,
        source=filters["source"] or None,
        job_id=filters["job_id"] or None,
        subscription_id=filters["subscription_id"] or None,
        limit=limit,
        before=before,
    )
    cursor = next_cursor([d.id for d in deliveries], limit)
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
    delivery = await _delivery(request)
    back = f"{base_path(request)}/deliveries"
    if is_htmx(request):
        return _item(request, delivery, back)
    return render(request, "deliveries_one.html", {**_common(request), "d": delivery, "back": back})


@signed_in
async def retry_item(request: Request) -> Response:
    """**Retry**: queue the delivery again (the API's rule), then show its new state."""
    delivery = await retry(services(request), await _delivery(request))
    back = request.state.form.one("back")
    if not back.startswith(f"{base_path(request)}/") or back.startswith("//"):
        back = f"{base_path(request)}/deliveries"
    if is_htmx(request):
        return _item(request, delivery, back)
    return see_other(back)
