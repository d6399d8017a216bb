"""Run a Replicate prediction through relay: create it with relay's webhook URL, then wait on relay.

Replicate posts `start` and `completed` webhooks, signed the Standard Webhooks way with your account's
secret; relay verifies and stores them, and `relay.wait()` answers the finished prediction the moment it
lands. This script needs no public address of its own and never polls Replicate.

    # relay.toml, with the secret from
    #   curl -s -H "Authorization: Bearer $REPLICATE_API_TOKEN" https://api.replicate.com/v1/webhooks/default/secret
    [sources.replicate]
    kind = "replicate"
    secret_env = "REPLICATE_WEBHOOK_SECRET"

    pip install callback-relay replicate
    export RELAY_URL=https://relay.example.com RELAY_API_KEY=rk_... REPLICATE_API_TOKEN=r8_...
    python examples/replicate_prediction.py "a red fox in the snow"

REPLICATE_MODEL names the model (default black-forest-labs/flux-schnell), RELAY_SOURCE the source (default
replicate). The replicate package reads REPLICATE_API_TOKEN, and REPLICATE_BASE_URL for the API's address
(the tests point it at a fake API).
"""

from __future__ import annotations

import json
import os
import sys

import replicate

from relay.client import Client

SOURCE = os.environ.get("RELAY_SOURCE", "replicate")
MODEL = os.environ.get("REPLICATE_MODEL", "black-forest-labs/flux-schnell")
TIMEOUT_S = 900.0


def main(prompt: str) -> int:
    with Client() as relay:  # RELAY_URL and RELAY_API_KEY from the environment
        prediction = replicate.predictions.create(
            model=MODEL,
            input={"prompt": prompt},
            webhook=relay.webhook_url(SOURCE),
            webhook_events_filter=["start", "completed"],  # running, then the end; no output/logs chatter
        )
        # Replicate names the prediction, so it is registered after creating; early webhooks are kept.
        relay.register(
            SOURCE, prediction.id, timeout_s=TIMEOUT_S, metadata={"prompt": prompt, "model": MODEL}
        )
        print(f"Replicate prediction {prediction.id} created; waiting on relay", file=sys.stderr)
        job = relay.wait(SOURCE, prediction.id, timeout=TIMEOUT_S)
    if job.status != "succeeded":
        print(f"{job.status}: {job.error}", file=sys.stderr)
        return 1
    print(json.dumps(job.result["output"], indent=2))  # the result is the whole prediction object
    return 0


if __name__ == "__main__":
    sys.exit(main(" ".join(sys.argv[1:]) or "a red fox in the snow"))
