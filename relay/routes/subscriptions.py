"""Subscriptions: subscribe a URL to a source's results (or all), list, change, delete, rotate the secret."""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from relay import signing, ssrf
from relay.errors import BadRequest, NotFound
from relay.outbox_models import EVENT_TYPES, Subscription, SubscriptionChange, Unchanged
from relay.providers.base import load_object
from relay.routes.common import authorize, configured_source, json_response, read_body, services
from relay.services import Services

__all__ = [
    "ROTATION_OVERLAP_S",
    "check_subscriber_urls",
    "checked_events",
    "rotate",
    "routes",
    "subscribe",
    "unsubscribe",
]

# After a rotation the old secret signs too for this long, so subscribers can switch without a gap.
ROTATION_OVERLAP_S = 24 * 3600.0


async def check_subscriber_urls(request: Request, urls: Collection[str]) -> None:
    """Refuse (400) any URL that is not http(s) or points at a private address (unless allowed)."""
    await _check_urls(services(request), urls)


async def _check_urls(svc: Services, urls: Collection[str]) -> None:
    allow = svc.settings.allow_private_destinations
    for url in urls:
        await ssrf.check_url(url, allow_private=allow)


def checked_events(value: Any) -> tuple[str, ...] | None:
    if value is None:
        return None
    if not isinstance(value, list) or not value or not all(isinstance(v, str) for v in value):
        raise BadRequest("events must be a non-empty list of event types", "bad_field")
    unknown = sorted(set(value) - EVENT_TYPES)
    if unknown:
        raise BadRequest(
            f"unknown event type(s) {', '.join(unknown)} (known: {', '.join(sorted(EVENT_TYPES))})",
            "bad_field",
        )
    return tuple(dict.fromkeys(value))


async def create_subscription(request: Request) -> Response:
    """Subscribe a URL; 201 with the subscription and its secret, shown this once."""
    svc = services(request)
    authorize(request)
    doc = load_object(await read_body(request, svc.settings.max_body_bytes))
    unknown = set(doc) - {"url", "source", "events"}
    if unknown:
        raise BadRequest(f"unknown field(s): {', '.join(sorted(unknown))}", "bad_field")
    url, source = doc.get("url"), doc.get("source")
    if not isinstance(url, str):
        raise BadRequest("url is required: the http(s) URL to deliver to", "bad_url")
    subscription = await subscribe(svc, url, source, doc.get("events"))
    return json_response(subscription.to_public(with_secret=True), 201)


async def subscribe(svc: Services, url: str, source: Any, events: Any) -> Subscription:
    """Subscribe `url` to `source` (None: all) and `events` (None: the final ones), with a new secret
    (the API's create and the dashboard's); 400 on an unknown source or event, or a refused URL (checked
    last: it may need a DNS look-up)."""
    if source is not None:
        source = configured_source(source, svc.settings.sources)
    checked = checked_events(events)
    await _check_urls(svc, [url])
    return await svc.store.create_subscription(url, source, checked, signing.new_secret(), svc.clock())


async def list_subscriptions(request: Request) -> Response:
    """Every subscription (secrets are not shown again)."""
    svc = services(request)
    authorize(request)
    subscriptions = await svc.store.list_subscriptions()
    return json_response({"subscriptions": [s.to_public() for s in subscriptions]})


async def get_subscription(request: Request) -> Response:
    svc = services(request)
    authorize(request)
    sub_id = request.path_params["id"]
    subscription = await svc.store.get_subscription(sub_id)
    if subscription is None:
        raise NotFound(f"no subscription {sub_id!r}", "unknown_subscription")
    return json_response(subscription.to_public())


async def _change_of(request: Request, doc: dict[str, Any]) -> SubscriptionChange:
    """The change a PATCH body asks for, each field checked as POST checks it (the URL, which may need a DNS
    look-up, last); a field left out is `UNCHANGED`, and null `source` or `events` means all."""
    unchanged = Unchanged.UNCHANGED
    source: str | Unchanged | None = unchanged
    if "source" in doc and doc["source"] is not None:
        source = configured_source(doc["source"], services(request).settings.sources)
    elif "source" in doc:
        source = None
    events = checked_events(doc["events"]) if "events" in doc else unchanged
    enabled = doc.get("enabled", unchanged)
    if not isinstance(enabled, bool | Unchanged):
        raise BadRequest("enabled must be true or false", "bad_field")
    url = doc.get("url", unchanged)
    if not isinstance(url, str | Unchanged):
        raise BadRequest("url must be the http(s) URL to deliver to", "bad_url")
    if isinstance(url, str):
        await check_subscriber_urls(request, [url])
    return SubscriptionChange(url=url, source=source, events=events, enabled=enabled)


async def update_subscription(request: Request) -> Response:
    """Change a subscription's `url`, `source`, `events` or `enabled` (what is left out stays); answer it.
    `enabled: true` re-enables one a 410 disabled; its dead deliveries stay dead (retry them one by one)."""
    svc = services(request)
    authorize(request)
    sub_id = request.path_params["id"]
    doc = load_object(await read_body(request, svc.settings.max_body_bytes))
    unknown = set(doc) - {"url", "source", "events", "enabled"}
    if unknown:
        raise BadRequest(f"unknown field(s): {', '.join(sorted(unknown))}", "bad_field")
    if await svc.store.get_subscription(sub_id) is None:  # before the URL's DNS look-up
        raise NotFound(f"no subscription {sub_id!r}", "unknown_subscription")
    change = await _change_of(request, doc)
    subscription = await svc.store.update_subscription(sub_id, change, svc.clock())
    if subscription is None:  # deleted meanwhile
        raise NotFound(f"no subscription {sub_id!r}", "unknown_subscription")
    return json_response(subscription.to_public())


async def delete_subscription(request: Request) -> Response:
    """Unsubscribe; deliveries not yet sent to it are given up."""
    authorize(request)
    await unsubscribe(services(request), request.path_params["id"])
    return Response(status_code=204)


async def unsubscribe(svc: Services, sub_id: str) -> None:
    """Delete subscription `sub_id` (the API's and the dashboard's); 404 when there is none."""
    if not await svc.store.delete_subscription(sub_id, svc.clock()):
        raise NotFound(f"no subscription {sub_id!r}", "unknown_subscription")


async def rotate_secret(request: Request) -> Response:
    """A new secret, shown once; the old one keeps signing too (a second signature) for 24 hours."""
    authorize(request)
    subscription = await rotate(services(request), request.path_params["id"])
    return json_response(subscription.to_public(with_secret=True))


async def rotate(svc: Services, sub_id: str) -> Subscription:
    """Give `sub_id` a new secret, the old one still signing for ROTATION_OVERLAP_S (the API's and the
    dashboard's); 404 when there is none."""
    subscription = await svc.store.rotate_subscription_secret(
        sub_id, signing.new_secret(), svc.clock(), ROTATION_OVERLAP_S
    )
    if subscription is None:
        raise NotFound(f"no subscription {sub_id!r}", "unknown_subscription")
    return subscription


routes = [
    Route("/v1/subscriptions", create_subscription, methods=["POST"]),
    Route("/v1/subscriptions", list_subscriptions, methods=["GET"]),
    Route("/v1/subscriptions/{id}", get_subscription, methods=["GET"]),
    Route("/v1/subscriptions/{id}", update_subscription, methods=["PATCH"]),
    Route("/v1/subscriptions/{id}", delete_subscription, methods=["DELETE"]),
    Route("/v1/subscriptions/{id}/rotate-secret", rotate_secret, methods=["POST"]),
]
