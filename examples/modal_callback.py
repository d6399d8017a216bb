"""A Modal function that reports to relay when it ends. Modal sends no webhooks, so the function does.

The job ID is the FunctionCall ID that `.spawn()` gives the caller, so the caller can register it and
long-poll relay for the result instead of holding `FunctionCall.get()` open.

Set up once:

    # relay.toml
    [sources.modal]
    kind = "standard-webhooks"
    secret = "whsec_..."
    result_pointer = "/result"

    modal secret create relay-callback \\
        RELAY_WEBHOOK_URL="$(relay source-url modal)" RELAY_WEBHOOK_SECRET="whsec_..."
    modal deploy examples/modal_callback.py

Use:

    import modal, httpx
    call = modal.Function.from_name("relay-example", "generate").spawn(prompt="a red fox")
    relay = httpx.Client(base_url="https://relay.example.com", headers={"authorization": "Bearer KEY"})
    relay.post("/v1/jobs", json={"source": "modal", "job_id": call.object_id, "timeout_s": 900})
    job = relay.get(f"/v1/jobs/modal/{call.object_id}", params={"wait": 60}, timeout=70).json()
"""

from __future__ import annotations

import os
from typing import Any

import modal
from relay_callback import post_result

app = modal.App("relay-example")
image = modal.Image.debian_slim().add_local_python_source("relay_callback")


def _report(status: str, **fields: Any) -> None:
    post_result(
        os.environ["RELAY_WEBHOOK_URL"],
        os.environ["RELAY_WEBHOOK_SECRET"],
        modal.current_function_call_id(),
        status,
        **fields,
    )


@app.function(image=image, secrets=[modal.Secret.from_name("relay-callback")], timeout=600)
def generate(prompt: str) -> dict[str, Any]:
    """Do the work and tell relay how it ended (the return value still reaches `FunctionCall.get()`)."""
    _report("running")
    try:
        result = {"prompt": prompt, "image_url": f"https://example.com/{abs(hash(prompt))}.png"}
    except Exception as exc:
        _report("failed", error=repr(exc))
        raise
    _report("succeeded", result=result)
    return result
