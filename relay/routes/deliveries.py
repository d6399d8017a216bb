"""Deliveries: list them with every attempt, read one, send one again."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from relay.errors import Conflict, NotFound
from relay.outbox_models import Delivery, DeliveryStatus
from relay.routes.common import authorize, json_response, next_cursor, page, row_id, services, status_filter
from relay.services import Services

__all__ = ["retry", "routes"]


def _delivery_id(request: Request) -> int:
    raw = request.path_params["id"]
    number = row_id(raw.removeprefix("dlv_"))
    if number is None:
        raise NotFound(f"no delivery {raw!r}", "unknown_delivery")
    return number


async def _delivery(request: Request) -> Delivery:
    delivery = await services(request).store.get_delivery(_delivery_id(request))
    if delivery is None:
        raise NotFound(f"no delivery {request.path_params['id']!r}", "unknown_delivery")
    return delivery


async def list_deliveries(request: Request) -> Response:
    """Deliveries newest first, filtered by status, source, job and subscription, with a cursor."""
    svc = services(request)
    authorize(request)
    params = request.query_params
    status = status_filter(request, DeliveryStatus)
    limit, before = page(request)
    deliveries = await svc.store.list_deliveries(
        status=status,
        source=params.get("source") or None,
        job_id=params.get("job_id") or None,
        subscription_id=params.get("subscription_id") or None,
        limit=limit,
        before=before,
    )
    cursor = next_cursor([d.id for d in deliveries], limit)
    return json_response({"deliveries": [d.to_public() for d in deliveries], "next_cursor": cursor})


async def get_delivery(request: Request) -> Response:
    authorize(request)
    return json_response((await _delivery(request)).to_public())


async def retry_delivery(request: Request) -> Response:
    """Send a delivery again now (same webhook-id), with a fresh retry schedule; 409 while it is in flight."""
    authorize(request)
    return json_response((await retry(services(request), await _delivery(request))).to_public(), 202)


async def retry(svc: Services, delivery: Delivery) -> Delivery:
    """Queue `delivery` again now and wake the deliverer (the API's retry and the dashboard's **Retry**);
    409 when its subscription is deleted or disabled, or while it is in flight."""
    if delivery.subscription_id is not None:
        subscription = await svc.store.get_subscription(delivery.subscription_id)
        if subscription is None or subscription.disabled_at is not None:
            why = "deleted" if subscription is None else f"disabled ({subscription.disabled_reason})"
            raise Conflict(f"the subscription of {delivery.public_id} is {why}", "subscription_inactive")
    retried = await svc.store.retry_delivery(delivery.id, svc.clock())
    if retried is None:
        raise Conflict(f"{delivery.public_id} is being delivered now", "in_flight")
    svc.wake_deliverer()
    return retried


routes = [
    Route("/v1/deliveries", list_deliveries, methods=["GET"]),
    Route("/v1/deliveries/{id}", get_delivery, methods=["GET"]),
    Route("/v1/deliveries/{id}/retry", retry_delivery, methods=["POST"]),
]
