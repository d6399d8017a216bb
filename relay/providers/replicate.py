"""`replicate`: Standard Webhooks signatures; the body is the prediction object."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from relay.models import Callback, Status
from relay.providers.base import error_text, job_id_of, load_object, status_of
from relay.providers.standard_webhooks import StandardWebhooksSigned

__all__ = ["Replicate"]

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
