"""Post a job's outcome to relay, signed the Standard Webhooks way: the recipe for any worker of your own.

Standard library only, so it can be copied into any image (Modal, a Celery worker, a cron job). Give relay a
source for your workers and paste its URL and secret into the worker's environment:

    [sources.workers]
    kind = "standard-webhooks"
    secret = "whsec_..."            # `relay` prints a fresh one in the first-run config; any whsec_ works
    result_pointer = "/result"      # the job's result is the body's "result" (default: the whole body)

    post_result(os.environ["RELAY_WEBHOOK_URL"], os.environ["RELAY_WEBHOOK_SECRET"], job_id, "succeeded",
                result={"image_url": "https://..."})

Status is any word relay knows (running, succeeded, failed, canceled...). Each call carries a fresh
`webhook-id`, reused on its own retries, so a retry after a lost answer is stored once.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
import urllib.error
import urllib.request
import uuid
from typing import Any

__all__ = ["post_result", "sign"]


def sign(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    """The `webhook-signature` value: `v1,` + base64 HMAC-SHA256 of `msg_id.timestamp.body`."""
    raw = secret.removeprefix("whsec_")
    key = base64.b64decode(raw + "=" * (-len(raw) % 4))
    digest = hmac.new(key, f"{msg_id}.{timestamp}.".encode() + body, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def post_result(
    url: str,
    secret: str,
    job_id: str,
    status: str,
    *,
    result: Any = None,
    error: str | None = None,
    attempts: int = 5,
    timeout_s: float = 30.0,
) -> dict[str, Any]:
    """POST `{"id", "status", "result", "error"}` signed to relay; retry network errors and 5xx with backoff.

    Answers relay's reply (`{"accepted": true, "job_id": ..., "duplicate": ...}`); a 4xx raises at once,
    since sending the same thing again cannot succeed.
    """
    body = json.dumps({"id": job_id, "status": status, "result": result, "error": error}).encode()
    msg_id = f"msg_{uuid.uuid4().hex}"
    for attempt in range(1, attempts + 1):
        timestamp = int(time.time())  # signed afresh per attempt: relay refuses timestamps over 5 min old
        request = urllib.request.Request(
            url,
            data=body,
            method="POST",
            headers={
                "content-type": "application/json",
                "webhook-id": msg_id,
                "webhook-timestamp": str(timestamp),
                "webhook-signature": sign(secret, msg_id, timestamp, body),
            },
        )
        try:
            with urllib.request.urlopen(request, timeout=timeout_s) as response:
                answer: dict[str, Any] = json.loads(response.read())
                return answer
        except urllib.error.HTTPError as exc:
            if exc.code < 500 or attempt == attempts:
                raise
        except OSError:
            if attempt == attempts:
                raise
        time.sleep(min(2.0**attempt, 30.0))
    raise AssertionError("unreachable")
