"""Archived files for PostgreSQL: queued with the final result (in the job's transaction), claimed and
settled by the archiver, and the `job.archived` event once a job's files are all settled.

`FileMethods` is the `ArchiveStore` half of `PostgresStore`; each method is one transaction of its own. The
job's row is locked before its files are judged settled, so two archivers settling a job's last files at once
take turns, and the event's entry key makes it once whatever happens.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from typing import TYPE_CHECKING

from relay.domain.archive import all_settled, archive_entry, set_files
from relay.domain.outbox import candidate_window, claimable
from relay.file_models import ARCHIVED_EVENT_TYPE, ArchivedFile, FileClaim, FileResult
from relay.models import IngestOutcome, Job
from relay.store.file_rows import (
    CLAIM_COLUMNS,
    FILES_OF_JOB_SQL,
    FINISH_SQL,
    GET_FILE_SQL,
    INSERT_FILE_SQL,
    JOB_FILE_STATUSES_SQL,
    PURGE_FILES,
    attach_files,
    claim_from_row,
    file_from_row,
    files_of_jobs_sql,
    final_rows,
    finish_values,
    insert_values,
)
from relay.store.numbered import numbered
from relay.store.rows import JOB_COLUMNS, job_from_row

if TYPE_CHECKING:
    import asyncpg

__all__ = ["FileMethods", "load_files", "purge_files", "queue_files"]

_INSERT_FILE_SQL = numbered(INSERT_FILE_SQL)
_FILES_OF_JOB_SQL = numbered(FILES_OF_JOB_SQL)
_FILES_OF_JOBS_SQL = files_of_jobs_sql("= ANY($1::bigint[])")
_FINISH_SQL = numbered(FINISH_SQL)
_GET_FILE_SQL = numbered(GET_FILE_SQL)
_STATUSES_SQL = numbered(JOB_FILE_STATUSES_SQL)
_PURGE_FILES_SQL = f"{PURGE_FILES} WHERE job_row = ANY($1::bigint[])"
_LOCK_JOB_BY_ROW = f"SELECT {JOB_COLUMNS} FROM jobs WHERE id = $1 FOR UPDATE"
# SKIP LOCKED: two archivers claiming at once split the due files instead of waiting on each other.
_CANDIDATES_SQL = """
SELECT id, host FROM files
WHERE status IN ('pending', 'fetching') AND next_attempt_at <= $1 AND NOT (host = ANY($2::text[]))
ORDER BY next_attempt_at LIMIT $3 FOR UPDATE SKIP LOCKED
"""
_TAKE_SQL = (
    "UPDATE files SET status = 'fetching', attempts = attempts + 1, next_attempt_at = $1, updated_at = $2"
    f" WHERE id = ANY($3::text[]) RETURNING {CLAIM_COLUMNS}"
)


async def queue_files(conn: asyncpg.Connection, job: Job, now: float) -> None:
    """Queue the files a job just made final carries, due now, in the transaction that made it final."""
    if job.files:
        await conn.executemany(_INSERT_FILE_SQL, insert_values(job.row_id, job.source, job.files, now))


async def purge_files(conn: asyncpg.Connection, job_rows: Sequence[int]) -> None:
    """Retention: a purged job's files wait for the archiver to delete their bytes, then their rows."""
    await conn.execute(_PURGE_FILES_SQL, list(job_rows))


async def load_files(conn: asyncpg.Connection | asyncpg.Pool, jobs: list[Job]) -> list[Job]:
    """The jobs with their archived files, in one read (none when no job is final)."""
    rows = final_rows(jobs)
    return attach_files(jobs, await conn.fetch(_FILES_OF_JOBS_SQL, rows)) if rows else jobs


class FileMethods:
    """The `ArchiveStore` half of `PostgresStore`, on the pool its class opens."""

    _pool: asyncpg.Pool

    async def claim_files(
        self,
        now: float,
        *,
        limit: int,
        lease_s: float,
        per_host: int,
        room: Mapping[str, int],
        blocked: Collection[str],
    ) -> list[FileClaim]:
        async with self._pool.acquire() as conn, conn.transaction():
            candidates = await conn.fetch(_CANDIDATES_SQL, now, list(blocked), candidate_window(limit))
            ids = claimable(
                ((row[0], row[1]) for row in candidates), limit=limit, per_endpoint=per_host, room=room
            )
            if not ids:
                return []
            taken = {
                row[0]: claim_from_row(row) for row in await conn.fetch(_TAKE_SQL, now + lease_s, now, ids)
            }
            return [taken[file_id] for file_id in ids]

    async def finish_files(self, results: Sequence[FileResult], now: float) -> list[IngestOutcome]:
        from relay.store.postgres.jobs import record_entry  # jobs.py imports this module
        from relay.store.postgres.notify import notify_job

        async with self._pool.acquire() as conn, conn.transaction():
            job_rows: list[int] = []
            for result in results:
                job_row = await conn.fetchval(_FINISH_SQL, *finish_values(result))
                if job_row is not None and job_row not in job_rows:
                    job_rows.append(job_row)
            outcomes = []
            for job_row in sorted(job_rows):  # locked in id order: two archivers cannot deadlock
                row = await conn.fetchrow(_LOCK_JOB_BY_ROW, job_row)
                statuses = [r[0] for r in await conn.fetch(_STATUSES_SQL, job_row)]
                if row is None or not all_settled(statuses):
                    continue
                files = (file_from_row(r) for r in await conn.fetch(_FILES_OF_JOB_SQL, job_row))
                job = set_files(job_from_row(row), files)
                entry = archive_entry(job)
                queued = await record_entry(conn, job_row, entry, now, job, ARCHIVED_EVENT_TYPE)
                if queued is not None:  # None: the event was made already
                    await notify_job(conn, job.source, job.job_id)
                    outcomes.append(IngestOutcome(job, duplicate=False, changed=True, queued=queued))
            return outcomes

    async def recover_files(self, now: float) -> int:
        """Nothing: several relays share this table (as for deliveries); a lapsed lease is claimed again."""
        return 0

    async def get_file(self, file_id: str) -> tuple[ArchivedFile, str, str] | None:
        row = await self._pool.fetchrow(_GET_FILE_SQL, file_id)
        return None if row is None else (file_from_row(row), row[-2], row[-1])

    async def purged_files(self, now: float, limit: int, lease_s: float) -> list[str]:
        rows = await self._pool.fetch(
            "UPDATE files SET next_attempt_at = $1 WHERE id IN (SELECT id FROM files"
            " WHERE status = 'purged' AND next_attempt_at <= $2 ORDER BY next_attempt_at LIMIT $3"
            " FOR UPDATE SKIP LOCKED) RETURNING id",
            now + lease_s,
            now,
            limit,
        )
        return [row[0] for row in rows]

    async def forget_files(self, file_ids: Sequence[str]) -> None:
        await self._pool.execute(
            "DELETE FROM files WHERE id = ANY($1::text[]) AND status = 'purged'", list(file_ids)
        )
