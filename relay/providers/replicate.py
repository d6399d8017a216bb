"""`replicate`: Standard Webhooks signatures; the body is the prediction object."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import httpx
import orjson

from relay.models import Callback, Job, Status
from relay.providers.base import error_text, job_id_of, load_object, reconciled, status_of
from relay.providers.cancel import (
    CancelAnswer,
    answer_object,
    cancel_answer,
    outcome_of,
    refused,
    send_cancel,
)
from relay.providers.standard_webhooks import StandardWebhooksSigned

__all__ = ["Replicate"]

API = "https://api.replicate.com/v1"

# Replicate's prediction lifecycle; `aborted`: the deadline (`Cancel-After`) passed before it started.
PREDICTION_STATUSES: Mapping[str, Status] = {
    "starting": Status.RUNNING,
    "processing": Status.RUNNING,
    "succeeded": Status.SUCCEEDED,
    "failed": Status.FAILED,
    "canceled": Status.CANCELED,
    "aborted": Status.CANCELED,
}


class Replicate(StandardWebhooksSigned):
    kind = "replicate"
    options: ClassVar[Mapping[str, Any]] = {}
    api_base = API

    def parse(self, headers: Mapping[str, str], body: bytes) -> Callback:
        doc = load_object(body)
        return Callback(
            job_id=job_id_of(doc.get("id"), "/id"),
            status=status_of(doc.get("status"), PREDICTION_STATUSES, "/status"),
            delivery_id=headers["webhook-id"],
            body=body,
            result=doc,
            error=error_text(doc.get("error")),
        )

    async def fetch_status(self, job: Job, client: httpx.AsyncClient) -> Callback | None:
        """GET the prediction, or `metadata.status_url` when on Replicate's API (a training's `urls.get`)."""
        if self.api is None:
            return None
        url = self.metadata_url(job, "status_url") or self.api.url("predictions", job.job_id)
        prediction = await self.api.get_json(client, url)
        status = status_of(prediction.get("status"), PREDICTION_STATUSES, "/status")
        return reconciled(
            job.job_id, status, orjson.dumps(prediction), prediction, error_text(prediction.get("error"))
        )

    async def cancel(self, job: Job, client: httpx.AsyncClient) -> CancelAnswer:
        """POST /predictions/{id}/cancel: the answer is the prediction, `canceled` once it is."""
        api = self.cancel_api()
        response = await send_cancel(api, client, "POST", api.url("predictions", job.job_id, "cancel"))
        if not response.is_success:
            raise refused(self.kind, job.job_id, response)
        prediction = answer_object(self.kind, response)
        outcome = outcome_of(prediction.get("status"), PREDICTION_STATUSES)
        return cancel_answer(response, outcome, prediction, error_text(prediction.get("error")))
