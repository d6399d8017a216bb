"""`runpod`: RunPod Serverless signs nothing, so the URL carries the proof (`POST /hooks/{source}/{token}`).

The body is the job envelope: `id`, `status`, `output` or `error` (plus `delayTime`, `executionTime`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import httpx
import orjson

from relay.models import Callback, Job, Status
from relay.providers.base import (
    UnsignedProvider,
    derived_delivery_id,
    error_text,
    job_id_of,
    load_object,
    reconciled,
    status_of,
)
from relay.providers.cancel import (
    CancelAnswer,
    answer_object,
    cancel_answer,
    outcome_of,
    refused,
    send_cancel,
    unsupported,
)

__all__ = ["RunPod"]

API = "https://api.runpod.ai/v2"

JOB_STATUSES: Mapping[str, Status] = {
    "in_queue": Status.RUNNING,
    "in_progress": Status.RUNNING,
    "running": Status.RUNNING,
    "completed": Status.SUCCEEDED,
    "failed": Status.FAILED,
    "cancelled": Status.CANCELED,
    # RunPod's own execution timeout: the job failed. (relay's `timed_out` is its own deadline passing.)
    "timed_out": Status.FAILED,
}


class RunPod(UnsignedProvider):
    kind = "runpod"
    # `endpoint_id` lets the sweeper ask `/{endpoint_id}/status/{job}`; a job's `metadata.endpoint_id` wins.
    options: ClassVar[Mapping[str, Any]] = {**UnsignedProvider.options, "endpoint_id": None}
    api_base = API

    def parse(self, headers: Mapping[str, str], body: bytes) -> Callback:
        doc = load_object(body)
        job_id = job_id_of(doc.get("id"), "/id")
        status = status_of(doc.get("status"), JOB_STATUSES, "/status")
        word = str(doc["status"]).upper()
        error = error_text(doc.get("error"))
        if word == "TIMED_OUT" and error is None:
            error = "TIMED_OUT"
        return Callback(
            job_id=job_id,
            status=status,
            delivery_id=derived_delivery_id(job_id, word),
            body=body,
            result=doc.get("output"),
            error=error,
        )

    async def fetch_status(self, job: Job, client: httpx.AsyncClient) -> Callback | None:
        """GET /{endpoint_id}/status/{job}: the same envelope as the webhook."""
        endpoint = job.metadata.get("endpoint_id") or self.source.options.get("endpoint_id")
        if self.api is None or not endpoint:
            return None
        envelope = await self.api.get_json(client, self.api.url(str(endpoint), "status", job.job_id))
        status = status_of(envelope.get("status"), JOB_STATUSES, "/status")
        error = error_text(envelope.get("error"))
        if str(envelope.get("status")).upper() == "TIMED_OUT" and error is None:
            error = "TIMED_OUT"
        return reconciled(job.job_id, status, orjson.dumps(envelope), envelope.get("output"), error)

    async def cancel(self, job: Job, client: httpx.AsyncClient) -> CancelAnswer:
        """POST /{endpoint_id}/cancel/{job}: RunPod answers `{"id", "status": "CANCELLED"}` at once."""
        api = self.cancel_api()
        endpoint = job.metadata.get("endpoint_id") or self.source.options.get("endpoint_id")
        if not endpoint:
            name = self.source.name
            raise unsupported(
                f"no RunPod endpoint for job {job.job_id!r}: set sources.{name}.endpoint_id, or register"
                " the job with metadata.endpoint_id"
            )
        response = await send_cancel(api, client, "POST", api.url(str(endpoint), "cancel", job.job_id))
        if not response.is_success:
            raise refused(self.kind, job.job_id, response)
        envelope = answer_object(self.kind, response)
        outcome = outcome_of(envelope.get("status"), JOB_STATUSES)
        return cancel_answer(response, outcome, envelope.get("output"), error_text(envelope.get("error")))
