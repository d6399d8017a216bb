"""`runpod`: RunPod Serverless signs nothing, so the URL carries the proof (`POST /hooks/{source}/{token}`).

The body is the job envelope: `id`, `status`, `output` or `error` (plus `delayTime`, `executionTime`).
"""

from __future__ import annotations

from collections.abc import Mapping

from relay.models import Callback, Status
from relay.providers.base import (
    UnsignedProvider,
    derived_delivery_id,
    error_text,
    job_id_of,
    load_object,
    status_of,
)

__all__ = ["RunPod"]

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
