"""`replicate`: Standard Webhooks signatures; the body is the prediction object."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import httpx
import orjson

from relay.models import Callback, Job, Status
from relay.providers.base import api_url, error_text, get_json, job_id_of, load_object, reconciled, status_of
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
        """GET the prediction (or the job's `metadata.status_url`, e.g. a training's `urls.get`)."""
        if not self.source.api_token:
            return None
        url = job.metadata.get("status_url") or api_url(self.source, API, f"predictions/{job.job_id}")
        prediction = await get_json(client, url, {"authorization": f"Bearer {self.source.api_token}"})
        status = status_of(prediction.get("status"), PREDICTION_STATUSES, "/status")
        return reconciled(
            job.job_id, status, orjson.dumps(prediction), prediction, error_text(prediction.get("error"))
        )
