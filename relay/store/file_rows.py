"""Archived files: the columns and queries every backend shares, and rows mapped to models (SQL with `?`
placeholders, which PostgreSQL numbers with `relay.store.numbered.numbered`)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from relay.domain.archive import host_of, set_files
from relay.file_models import ArchivedFile, FileClaim, FileResult, FileStatus
from relay.models import Job

__all__ = [
    "CLAIM_COLUMNS",
    "FILES_OF_JOB_SQL",
    "FILE_COLUMNS",
    "FINISH_SQL",
    "GET_FILE_SQL",
    "INSERT_FILE_SQL",
    "JOB_FILE_STATUSES_SQL",
    "PURGE_FILES",
    "PURGE_FILES_SQL",
    "attach_files",
    "claim_from_row",
    "file_from_row",
    "files_by_job",
    "files_of_jobs_sql",
    "final_rows",
    "finish_values",
    "insert_values",
]

FILE_COLUMNS = "id, pointer, source_url, url, status, bytes, sha256, content_type, error"
CLAIM_COLUMNS = "id, job_row, source, source_url, host, attempts"
INSERT_FILE_SQL = (
    "INSERT INTO files (id, job_row, source, position, pointer, source_url, url, host, status,"
    " next_attempt_at, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, 'pending', ?, ?, ?)"
)
# Bound: the job's row. In the result's document order.
FILES_OF_JOB_SQL = f"SELECT {FILE_COLUMNS} FROM files WHERE job_row = ? ORDER BY position"
JOB_FILE_STATUSES_SQL = "SELECT status FROM files WHERE job_row = ?"
# A file with its job's key, for `GET /v1/files/{id}` (a purged job's files have no job: not found).
GET_FILE_SQL = (
    f"SELECT {', '.join(f'f.{c}' for c in FILE_COLUMNS.split(', '))}, j.source, j.job_id"
    " FROM files f JOIN jobs j ON j.id = f.job_row WHERE f.id = ?"
)
# Recording a fetch's result holds only while the claim does (nobody re-claimed it after its lease); answers
# the file's job row, or no row when the claim had lapsed.
FINISH_SQL = (
    "UPDATE files SET status = ?, next_attempt_at = ?, updated_at = ?, bytes = ?, sha256 = ?,"
    " content_type = ?, error = ? WHERE id = ? AND status = 'fetching' AND attempts = ? RETURNING job_row"
)
# Retention: the files of a purged job wait, due at once, for the archiver to delete their bytes. Each
# backend adds which jobs' files (one job in SQLite's sweep, a batch in PostgreSQL's).
PURGE_FILES = "UPDATE files SET status = 'purged', job_row = NULL, next_attempt_at = 0"
PURGE_FILES_SQL = f"{PURGE_FILES} WHERE job_row = ?"


def files_of_jobs_sql(job_row_in: str) -> str:
    """The files of many jobs in one query, for `attach_files`: `job_row_in` is the backend's test that a
    job row is one of the bound list's (`= ANY($1::bigint[])`, `IN (SELECT value FROM json_each(?))`)."""
    return f"SELECT job_row, {FILE_COLUMNS} FROM files WHERE job_row {job_row_in} ORDER BY job_row, position"


def insert_values(
    job_row: int, source: str, files: Sequence[ArchivedFile], now: float
) -> list[tuple[Any, ...]]:
    """The rows of a job's new files, due now."""
    return [
        (f.id, job_row, source, i, f.pointer, f.source_url, f.url, host_of(f.source_url), now, now, now)
        for i, f in enumerate(files)
    ]


def finish_values(result: FileResult) -> tuple[Any, ...]:
    r = result
    return (
        r.status.value,
        r.next_attempt_at,
        r.updated_at,
        r.bytes,
        r.sha256,
        r.content_type,
        r.error,
        r.file_id,
        r.attempts,
    )


def file_from_row(row: Any) -> ArchivedFile:
    """The file of a row selected with `FILE_COLUMNS`."""
    return ArchivedFile(row[0], row[1], row[2], row[3], FileStatus(row[4]), row[5], row[6], row[7], row[8])


def claim_from_row(row: Any) -> FileClaim:
    """The claim of a row selected with `CLAIM_COLUMNS`."""
    return FileClaim(row[0], row[1], row[2], row[3], row[4], row[5])


def files_by_job(rows: Iterable[Any]) -> dict[int, tuple[ArchivedFile, ...]]:
    """Files grouped by job row, from rows of `job_row` then `FILE_COLUMNS`, in order."""
    grouped: dict[int, list[ArchivedFile]] = {}
    for row in rows:
        grouped.setdefault(row[0], []).append(file_from_row(row[1:]))
    return {job_row: tuple(files) for job_row, files in grouped.items()}


def final_rows(jobs: Iterable[Job]) -> list[int]:
    """The rows of the final jobs among `jobs`: only those can have files (none: no query to run)."""
    return [job.row_id for job in jobs if job.final]


def attach_files(jobs: list[Job], rows: Iterable[Any]) -> list[Job]:
    """The jobs, each with its files from rows of `files_of_jobs_sql` (read just now, held by nobody)."""
    found = files_by_job(rows)
    for job in jobs:
        if job.row_id in found:
            set_files(job, found[job.row_id])
    return jobs
