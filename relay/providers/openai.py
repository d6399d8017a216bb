"""`openai`: Standard Webhooks signatures; thin events whose type says how the job ended.

The body is `{"id": "evt_...", "type": "response.completed", "data": {"id": "resp_..."}, ...}`; the job is
`data.id` (a response, batch, fine-tuning job, eval run or video) and the event type is its status. An
event type this version does not know is still taken, as `running`, and counted as a warning.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import httpx
import orjson

from relay.errors import BadRequest
from relay.models import Callback, Job, Status
from relay.providers.base import error_text, job_id_of, load_object, reconciled
from relay.providers.cancel import (
    CancelAnswer,
    CancelOutcome,
    answer_object,
    cancel_answer,
    outcome_of,
    refused,
    send_cancel,
    unsupported,
)
from relay.providers.standard_webhooks import StandardWebhooksSigned

__all__ = ["EVENT_STATUSES", "OpenAI"]

EVENT_STATUSES: Mapping[str, Status] = {
    "response.completed": Status.SUCCEEDED,
    "response.failed": Status.FAILED,
    "response.cancelled": Status.CANCELED,
    # Ended early (max_output_tokens, content filter): final, and not what was asked for.
    "response.incomplete": Status.FAILED,
    "batch.completed": Status.SUCCEEDED,
    "batch.failed": Status.FAILED,
    "batch.expired": Status.FAILED,
    "batch.cancelled": Status.CANCELED,
    "fine_tuning.job.succeeded": Status.SUCCEEDED,
    "fine_tuning.job.failed": Status.FAILED,
    "fine_tuning.job.cancelled": Status.CANCELED,
    "eval.run.succeeded": Status.SUCCEEDED,
    "eval.run.failed": Status.FAILED,
    "eval.run.canceled": Status.CANCELED,
    "eval.run.cancelled": Status.CANCELED,  # the spelling some of OpenAI's pages use
    "video.completed": Status.SUCCEEDED,
    "video.failed": Status.FAILED,
}


API = "https://api.openai.com/v1"

# The resource behind a job ID (by its prefix) and the words of its `status` field.
_RUNNING = ("queued", "in_progress", "validating", "validating_files", "finalizing", "cancelling", "running")
RESOURCES: Mapping[str, tuple[str, Mapping[str, Status]]] = {
    "resp_": (
        "responses",
        {
            "completed": Status.SUCCEEDED,
            "failed": Status.FAILED,
            "cancelled": Status.CANCELED,
            "incomplete": Status.FAILED,
        },
    ),
    "batch_": (
        "batches",
        {
            "completed": Status.SUCCEEDED,
            "failed": Status.FAILED,
            "expired": Status.FAILED,
            "cancelled": Status.CANCELED,
        },
    ),
    "ftjob-": (
        "fine_tuning/jobs",
        {"succeeded": Status.SUCCEEDED, "failed": Status.FAILED, "cancelled": Status.CANCELED},
    ),
    "video_": ("videos", {"completed": Status.SUCCEEDED, "failed": Status.FAILED}),
}


# The resources relay cancels (POST /{path}/{id}/cancel), by the job ID prefix of RESOURCES.
CANCELABLE = ("resp_", "batch_")


class OpenAI(StandardWebhooksSigned):
    kind = "openai"
    options: ClassVar[Mapping[str, Any]] = {}
    api_base = API

    def parse(self, headers: Mapping[str, str], body: bytes) -> Callback:
        doc = load_object(body)
        event_type = doc.get("type")
        if not isinstance(event_type, str) or not event_type:
            raise BadRequest("no event type at /type in the body", "missing_status")
        data = doc.get("data")
        data = data if isinstance(data, dict) else {}
        status = EVENT_STATUSES.get(event_type)
        if status is None:
            self.warn("unknown_event_type", f"unknown OpenAI event type {event_type[:64]!r} taken as running")
            status = Status.RUNNING
            # Events about no job (e.g. realtime.call.incoming) are kept under their own event ID.
            job_value, where = (data["id"], "/data/id") if "id" in data else (doc.get("id"), "/id")
        else:
            job_value, where = data.get("id"), "/data/id"
        return Callback(
            job_id=job_id_of(job_value, where),
            status=status,
            delivery_id=headers["webhook-id"],
            body=body,
            result=doc,
            error=None if status in (Status.SUCCEEDED, Status.RUNNING) else event_type,
        )

    async def fetch_status(self, job: Job, client: httpx.AsyncClient) -> Callback | None:
        """Retrieve the response, batch, fine-tuning job or video named by the job ID (eval runs: no)."""
        resource = next((r for prefix, r in RESOURCES.items() if job.job_id.startswith(prefix)), None)
        if self.api is None or resource is None:
            return None
        path, words = resource
        obj = await self.api.get_json(client, self.api.url(*path.split("/"), job.job_id))
        word = obj.get("status")
        status = Status.RUNNING if word in _RUNNING else words.get(str(word))
        if status is None:
            self.warn("unknown_resource_status", f"unknown OpenAI {path} status {str(word)[:64]!r}")
            return None
        error = (
            None if status in (Status.SUCCEEDED, Status.RUNNING) else (error_text(obj.get("error")) or word)
        )
        return reconciled(job.job_id, status, orjson.dumps(obj), obj, error)

    async def cancel(self, job: Job, client: httpx.AsyncClient) -> CancelAnswer:
        """POST /responses/{id}/cancel (a background response) or /batches/{id}/cancel; the answer is the
        object: a response `cancelled` at once, a batch `cancelling` (running) until its webhook says more."""
        api = self.cancel_api()
        prefix = next((p for p in CANCELABLE if job.job_id.startswith(p)), None)
        if prefix is None:
            raise unsupported(
                f"relay cancels OpenAI responses (resp_...) and batches (batch_...), not job {job.job_id!r}"
            )
        path, words = RESOURCES[prefix]
        response = await send_cancel(api, client, "POST", api.url(path, job.job_id, "cancel"))
        if not response.is_success:
            raise refused(self.kind, job.job_id, response)
        obj = answer_object(self.kind, response)
        word = obj.get("status")
        outcome = outcome_of(word, words)
        # As reconcile: a cancelled object's error, else its status word.
        error = (error_text(obj.get("error")) or str(word)) if outcome is CancelOutcome.CANCELED else None
        return cancel_answer(response, outcome, obj, error)
