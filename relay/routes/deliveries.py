"""Deliveries: list them with every attempt, read one, send one again."""

from __future__ import annotations

from dataclasses import dataclass

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from relay.errors import Conflict, NotFound
from relay.outbox_models import Delivery, DeliveryStatus
from relay.routes.common import authorize, json_response, next_cursor, page, row_id, services, status_filter
from relay.services import Services

__all__ = ["DeliveryFilters", "deliveries_page", "delivery_of", "retry", "routes"]


@dataclass(frozen=True)
class DeliveryFilters:
    """What a list of deliveries is narrowed to (None: any): `?status=&source=&job_id=&subscription_id=`."""

    status: DeliveryStatus | None
    source: str | None
    job_id: str | None
    subscription_id: str | None

    @classmethod
    def of(cls, request: Request) -> DeliveryFilters:
        """The filters of a list request (the API's or the dashboard's); 400 on an unknown status."""
        params = request.query_params
        return cls(
            status=status_filter(request, DeliveryStatus),
            source=params.get("source") or None,
            job_id=params.get("job_id") or None,
            subscription_id=params.get("subscription_id") or None,
        )


async def deliveries_page(
    svc: Services, filters: DeliveryFilters, limit: int, before: int | None
) -> tuple[list[Delivery], str | None]:
    """A page of deliveries newest first, below `before`, and the next page's cursor (None after the last)."""
    deliveries = await svc.store.list_deliveries(
        status=filters.status,
        source=filters.source,
        job_id=filters.job_id,
        subscription_id=filters.subscription_id,
        limit=limit,
        before=before,
    )
    return deliveries, next_cursor([d.id for d in deliveries], limit)


async def delivery_of(svc: Services, public_id: str) -> Delivery:
    """The delivery `public_id` names (`dlv_<n>`, or just `<n>`); 404 when there is none."""
    number = row_id(public_id.removeprefix("dlv_"))
    delivery = None if number is None else await svc.store.get_delivery(number)
    if delivery is None:
        raise NotFound(f"no delivery {public_id!r}", "unknown_delivery")
    return delivery


async def list_deliveries(request: Request) -> Response:
    """Deliveries newest first, filtered by status, source, job and subscription, with a cursor."""
    svc = services(request)
    authorize(request)
    filters = DeliveryFilters.of(request)
    limit, before = page(request)
    deliveries, cursor = await deliveries_page(svc, filters, limit, before)
    return json_response({"deliveries": [d.to_public() for d in deliveries], "next_cursor": cursor})


async def get_delivery(request: Request) -> Response:
    authorize(request)
    return json_response((await delivery_of(services(request), request.path_params["id"])).to_public())


async def retry_delivery(request: Request) -> Response:
    """Send a delivery again now (same webhook-id), with a fresh retry schedule; 409 while it is in flight."""
    authorize(request)
    svc = services(request)
    return json_response(
        (await retry(svc, await delivery_of(svc, request.path_params["id"]))).to_public(), 202
    )


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
