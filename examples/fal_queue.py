"""Run a fal model through relay: submit to fal's queue with relay's webhook URL, then wait on relay.

fal posts the result to relay once, signed with its ed25519 key; relay verifies and stores it, and
`relay.wait()` answers it the moment it lands. This script needs no public address of its own and never polls
fal, and any other process (a web back end, `relay jobs wait fal REQUEST_ID`) can wait for the same request.

    # relay.toml: nothing to copy from fal, relay checks fal's signature with fal's published keys
    [sources.fal]
    kind = "fal"

    pip install callback-relay fal-client
    export RELAY_URL=https://relay.example.com RELAY_API_KEY=rk_... FAL_KEY=...
    python examples/fal_queue.py "a red fox in the snow"

FAL_MODEL names the model (default fal-ai/flux/schnell), RELAY_SOURCE the source (default fal). fal_client
reads FAL_KEY, and FAL_QUEUE_RUN_HOST for the queue's host (HTTPS; the tests point it at a fake queue).
"""

from __future__ import annotations

import json
import os
import sys

import fal_client

from relay.client import Client

SOURCE = os.environ.get("RELAY_SOURCE", "fal")
MODEL = os.environ.get("FAL_MODEL", "fal-ai/flux/schnell")
TIMEOUT_S = 600.0


def main(prompt: str) -> int:
    with Client() as relay:  # RELAY_URL and RELAY_API_KEY from the environment
        # fal names the request, so the job is registered after submitting; a result that comes first is kept.
        handle = fal_client.submit(MODEL, arguments={"prompt": prompt}, webhook_url=relay.webhook_url(SOURCE))
        relay.register(
            SOURCE,
            handle.request_id,
            timeout_s=TIMEOUT_S,
            # fal's own status and result URLs: relay asks them if the webhook has not come by the deadline.
            metadata={"prompt": prompt, "status_url": handle.status_url, "response_url": handle.response_url},
        )
        print(f"fal request {handle.request_id} queued; waiting on relay", file=sys.stderr)
        job = relay.wait(SOURCE, handle.request_id, timeout=TIMEOUT_S)
    if job.status != "succeeded":
        print(f"{job.status}: {job.error}", file=sys.stderr)
        return 1
    print(json.dumps(job.result, indent=2))  # the model's output, e.g. {"images": [{"url": ...}], "seed": 42}
    return 0


if __name__ == "__main__":
    sys.exit(main(" ".join(sys.argv[1:]) or "a red fox in the snow"))
