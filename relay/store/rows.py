"""A job's columns and its row mapped to the model: the same for every backend (JSON kept as orjson bytes)."""

from __future__ import annotations

from typing import Any

import orjson

from relay.models import Job, Status

__all__ = ["JOB_COLUMNS", "job_from_row"]

JOB_COLUMNS = (
    "id, source, job_id, status, result, error, late, metadata, created_at, updated_at, "
    "finished_at, deadline, callbacks, subscribers, timeout_s"
)


def job_from_row(row: Any) -> Job:
    """The job of a row selected with `JOB_COLUMNS`."""
    return Job(
        row_id=row[0],
        source=row[1],
        job_id=row[2],
        status=Status(row[3]),
        result=None if row[4] is None else orjson.loads(row[4]),
        error=row[5],
        late=bool(row[6]),
        metadata=orjson.loads(row[7]),
        created_at=row[8],
        updated_at=row[9],
        finished_at=row[10],
        deadline=row[11],
        callbacks=row[12],
        subscribers=tuple(orjson.loads(row[13])),
        timeout_s=row[14],
    )
