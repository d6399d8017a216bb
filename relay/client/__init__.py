"""relay's Python client: `Client` (blocking) and `AsyncClient` (asyncio) with the same methods, typed
results and errors, and `verify_delivery` for subscribers. It needs only httpx.

    from relay.client import Client
    with Client("http://127.0.0.1:8000", api_key="rk_...") as relay:
        job = relay.register("fal", "req-123", timeout_s=600)
        job = relay.wait("fal", "req-123", timeout=600)
"""

from relay.client.async_client import AsyncClient
from relay.client.errors import (
    AlreadyFinal,
    AuthError,
    BadRequest,
    CancelUnsupported,
    Conflict,
    Forbidden,
    InvalidSignature,
    NotFound,
    RelayConnectionError,
    RelayError,
    Unauthorized,
    Unavailable,
    WaitTimeout,
)
from relay.client.models import FINAL_STATUSES, Delivery, DeliveryAttempt, Event, File, Job, Subscription
from relay.client.sync_client import Client
from relay.client.webhooks import verify_delivery

__all__ = [
    "FINAL_STATUSES",
    "AlreadyFinal",
    "AsyncClient",
    "AuthError",
    "BadRequest",
    "CancelUnsupported",
    "Client",
    "Conflict",
    "Delivery",
    "DeliveryAttempt",
    "Event",
    "File",
    "Forbidden",
    "InvalidSignature",
    "Job",
    "NotFound",
    "RelayConnectionError",
    "RelayError",
    "Subscription",
    "Unauthorized",
    "Unavailable",
    "WaitTimeout",
    "verify_delivery",
]
