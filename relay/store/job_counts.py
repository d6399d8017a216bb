"""The dashboard's counts of jobs by status, read in one bounded statement: each status's count is a range of
the jobs_by_status index (covering: no table row is read) that stops after `JOB_COUNT_CAP` + 1 entries, so a
page costs the same with a million jobs as with twenty thousand. One past the cap says "more than the cap".
PostgreSQL reads a status most jobs have off the table instead (its choice: the scan stops after the cap's
rows, which come at once when most rows match)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from relay.models import Status
from relay.store.backlog import COUNT_CAP, capped_count

__all__ = ["JOB_COUNT_CAP", "job_counts", "job_counts_sql"]

JOB_COUNT_CAP = COUNT_CAP


def job_counts_sql(indexed: bool) -> str:
    """One row, one capped count per status in `Status` order; `indexed` pins SQLite to jobs_by_status."""
    jobs = "jobs INDEXED BY jobs_by_status" if indexed else "jobs"
    counts = ", ".join(capped_count(jobs, f"status = '{s.value}'", JOB_COUNT_CAP + 1) for s in Status)
    return f"SELECT {counts}"


def job_counts(row: Sequence[Any]) -> dict[str, int]:
    """Each status's count (at most JOB_COUNT_CAP + 1) from `job_counts_sql`'s row; zeros left out."""
    return {s.value: int(n) for s, n in zip(Status, row, strict=True) if n}
