"""Sending one delivery: the shared HTTP client, the Standard Webhooks signature and the signed POST itself.

Scheduling the attempts (claims, slots, breakers) and judging their answers is `relay.delivery`'s.
"""

from __future__ import annotations

import asyncio
import functools
import time

import aiohttp

from relay import __version__, signing
from relay.domain.outbox import Answer
from relay.outbox_models import Claim, DeliveryAttempt
from relay.settings import Settings
from relay.ssrf import DestinationBlocked, guarded_connector

__all__ = ["RESPONSE_HEAD_BYTES", "DeliveryClient", "delivery_client", "post_signed"]

RESPONSE_HEAD_BYTES = 1024  # how much of each answer is kept with the attempt
KEEPALIVE_S = 5.0  # an idle connection to a subscriber is kept this long for its next delivery
USER_AGENT = f"relay-webhooks/{__version__}"
_REDIRECTS = frozenset((301, 302, 303, 307, 308))
# A subscription's key is decoded once, not on every attempt (rotated secrets are new entries).
_key = functools.lru_cache(maxsize=4096)(signing.decode_secret)


class DeliveryClient:
    """The one HTTP client all deliveries share: an aiohttp session on a guarded, pooled connector.

    aiohttp rather than httpx for its speed (docs/decisions.md); `aclose()` as the app closes its clients.
    """

    def __init__(self, session: aiohttp.ClientSession) -> None:
        self.session = session

    async def aclose(self) -> None:
        await self.session.close()


def delivery_client(settings: Settings) -> DeliveryClient:
    """The deliveries' client: pooled, bounded, no proxies from the environment, guarded destinations."""
    connector = guarded_connector(
        settings.delivery_concurrency,
        allow_private=settings.allow_private_destinations,
        keepalive_s=KEEPALIVE_S,
    )
    session = aiohttp.ClientSession(
        connector=connector,
        # The whole attempt is bounded by the deliverer itself; aiohttp bounds only the connection.
        timeout=aiohttp.ClientTimeout(total=None, connect=settings.delivery_connect_timeout_s),
        headers={"user-agent": USER_AGENT},
        trust_env=False,
        cookie_jar=aiohttp.DummyCookieJar(),  # one subscriber's cookies must not go to another
    )
    return DeliveryClient(session)


def signature(settings: Settings, claim: Claim, timestamp: int) -> str | None:
    """The `webhook-signature` header: one entry per secret of the subscription (or `signing_secret` for
    per-job subscribers); None when there is no secret to sign with."""
    secrets = claim.secrets or ((settings.signing_secret,) if settings.signing_secret else ())
    if not secrets:
        return None
    return " ".join(signing.sign(_key(s), claim.delivery.event_id, timestamp, claim.body) for s in secrets)


async def post_signed(session: aiohttp.ClientSession, settings: Settings, claim: Claim, at: float) -> Answer:
    """POST once, bounded by `delivery_timeout_s` as a whole; network failures are answers, not raised."""
    delivery = claim.delivery
    timestamp = int(at)
    signed = signature(settings, claim, timestamp)
    if signed is None:
        unsigned = "not sent: per-job subscribers are signed with signing_secret, which is not configured"
        return Answer(DeliveryAttempt(at, None, 0.0, unsigned))
    headers = {
        "content-type": "application/json",
        "webhook-id": delivery.event_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": signed,
    }
    timeout = settings.delivery_timeout_s
    status: int | None = None
    retry_after: str | None = None
    head = b""
    error: str | None = None
    connection_failed = False
    started = time.monotonic()
    try:
        async with (
            asyncio.timeout(timeout),
            session.post(delivery.url, data=claim.body, headers=headers, allow_redirects=False) as response,
        ):
            status = response.status
            retry_after = response.headers.get("retry-after")
            if status in _REDIRECTS and "location" in response.headers:
                error = f"redirect to {response.headers['location']!r} not followed"
            content = response.content
            while len(head) < RESPONSE_HEAD_BYTES and not content.at_eof():
                chunk = await content.read(RESPONSE_HEAD_BYTES - len(head))
                if not chunk:
                    break
                head += chunk
            if not content.at_eof():
                response.close()  # the rest is not read; the connection is closed rather than reused
    except aiohttp.ConnectionTimeoutError:
        error = f"no connection within {settings.delivery_connect_timeout_s:g} s"
    except TimeoutError:  # after a status line, the answer counts; only its body was cut off
        error = f"no answer within {timeout:g} s" if status is None else "the body was cut off by the timeout"
    except aiohttp.ClientConnectorError as exc:
        blocked = isinstance(exc.os_error, DestinationBlocked)
        connection_failed = not blocked
        error = f"destination refused: {exc.os_error}" if blocked else f"connection failed: {exc}"
    except aiohttp.ClientError as exc:
        error = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    latency_ms = (time.monotonic() - started) * 1000
    attempt = DeliveryAttempt(at, status, latency_ms, error, head)
    return Answer(attempt, retry_after, connection_failed)
