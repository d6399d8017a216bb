"""Run a RunPod Serverless job through relay: `/run` it with relay's webhook URL, then wait on relay.

RunPod signs nothing, so relay's URL for the source carries a token signed with relay's secret key: the URL
is the credential, keep it private. RunPod posts the finished job to it; `relay.wait()` answers it the moment
it lands. This script needs no public address of its own and never polls RunPod.

    # relay.toml
    [sources.runpod]
    kind = "runpod"

    pip install callback-relay
    export RELAY_URL=https://relay.example.com RELAY_API_KEY=rk_... RUNPOD_API_KEY=... RUNPOD_ENDPOINT_ID=...
    python examples/runpod_run.py "a red fox in the snow"

It calls RunPod's documented REST API with httpx (relay's own dependency) rather than the `runpod` package,
which brings boto3, FastAPI, paramiko and more for its worker side and adds nothing to one POST here.
RUNPOD_API_BASE replaces https://api.runpod.ai/v2 (the tests point it at a fake API); RELAY_SOURCE names
the source (default runpod).
"""

from __future__ import annotations

import json
import os
import sys

import httpx

from relay.client import Client

SOURCE = os.environ.get("RELAY_SOURCE", "runpod")
API_BASE = os.environ.get("RUNPOD_API_BASE", "https://api.runpod.ai/v2").rstrip("/")
TIMEOUT_S = 900.0


def run(endpoint_id: str, job_input: dict[str, object], webhook_url: str) -> str:
    """Queue a job on the endpoint (`POST /v2/{endpoint_id}/run`); answers RunPod's job ID."""
    answer = httpx.post(
        f"{API_BASE}/{endpoint_id}/run",
        headers={"authorization": f"Bearer {os.environ['RUNPOD_API_KEY']}"},
        json={"input": job_input, "webhook": webhook_url},
        timeout=30.0,
    )
    answer.raise_for_status()
    return str(answer.json()["id"])  # {"id": "...", "status": "IN_QUEUE"}


def main(prompt: str) -> int:
    endpoint_id = os.environ["RUNPOD_ENDPOINT_ID"]
    with Client() as relay:  # RELAY_URL and RELAY_API_KEY from the environment
        job_id = run(endpoint_id, {"prompt": prompt}, relay.webhook_url(SOURCE))
        # RunPod names the job, so it is registered after queueing; a result that comes first is kept.
        # The endpoint lets relay ask RunPod's status API if the webhook has not come by the deadline.
        relay.register(
            SOURCE, job_id, timeout_s=TIMEOUT_S, metadata={"prompt": prompt, "endpoint_id": endpoint_id}
        )
        print(f"RunPod job {job_id} queued; waiting on relay", file=sys.stderr)
        job = relay.wait(SOURCE, job_id, timeout=TIMEOUT_S)
    if job.status != "succeeded":
        print(f"{job.status}: {job.error}", file=sys.stderr)
        return 1
    print(json.dumps(job.result, indent=2))  # the worker's output
    return 0


if __name__ == "__main__":
    sys.exit(main(" ".join(sys.argv[1:]) or "a red fox in the snow"))
