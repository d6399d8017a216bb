"""Archived files for SQLite: written with the final result, claimed and settled by the archiver, and the
`job.archived` event once a job's files are all settled. Each function runs in the writer's transaction.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Collection, Mapping, Sequence
from functools import partial

import orjson

from relay.domain.archive import all_settled, archive_entry, set_files
from relay.domain.outbox import candidate_window, claimable
from relay.file_models import ARCHIVED_EVENT_TYPE, ArchivedFile, FileClaim, FileResult
from relay.models import IngestOutcome, Job
from relay.store.file_rows import (
    CLAIM_COLUMNS,
    FILES_OF_JOB_SQL,
    FINISH_SQL,
    GET_FILE_SQL,
    JOB_FILE_STATUSES_SQL,
    claim_from_row,
    file_from_row,
    finish_values,
)
from relay.store.rows import JOB_COLUMNS, job_from_row
from relay.store.sqlite.handles import Handles
from relay.store.sqlite.jobs import record_callback

__all__ = ["FileMethods", "claim_files", "finish_files", "forget_files", "purged_files", "recover_files"]

_CANDIDATES_SQL = """
SELECT id, host FROM files INDEXED BY files_due
WHERE status IN ('pending', 'fetching', 'purged') AND status != 'purged' AND next_attempt_at <= ?
  AND host NOT IN (SELECT value FROM json_each(?))
ORDER BY next_attempt_at LIMIT ?
"""
_TAKE_SQL = (
    "UPDATE files SET status = 'fetching', attempts = attempts + 1, next_attempt_at = ?, updated_at = ?"
    f" WHERE id IN (SELECT value FROM json_each(?)) RETURNING {CLAIM_COLUMNS}"
)
_JOB_BY_ROW = f"SELECT {JOB_COLUMNS} FROM jobs WHERE id = ?"


def claim_files(
    conn: sqlite3.Connection,
    now: float,
    *,
    limit: int,
    lease_s: float,
    per_host: int,
    room: Mapping[str, int],
    blocked: Collection[str],
) -> list[FileClaim]:
    """Take up to `limit` due files for one fetch each under a lease, within each host's room."""
    candidates = conn.execute(_CANDIDATES_SQL, (now, orjson.dumps(list(blocked)), candidate_window(limit)))
    ids = claimable(candidates, limit=limit, per_endpoint=per_host, room=room)
    if not ids:
        return []
    taken = {
        row[0]: claim_from_row(row)
        for row in conn.execute(_TAKE_SQL, (now + lease_s, now, orjson.dumps(ids)))
    }
    return [taken[file_id] for file_id in ids]


def finish_files(conn: sqlite3.Connection, results: Sequence[FileResult], now: float) -> list[IngestOutcome]:
    """Record fetch results whose claims still hold; then each job whose files are now all settled gets its
    `job.archived` event (with its deliveries), once. Answers those events' outcomes."""
    job_rows: list[int] = []
    for result in results:
        for (job_row,) in conn.execute(FINISH_SQL, finish_values(result)).fetchall():
            if job_row is not None and job_row not in job_rows:
                job_rows.append(job_row)
    outcomes = []
    for job_row in job_rows:
        if not all_settled(row[0] for row in conn.execute(JOB_FILE_STATUSES_SQL, (job_row,))):
            continue
        job = job_with_files(conn, job_row)
        if job is None:
            continue
        queued = record_callback(
            conn, job_row, archive_entry(job), now, changed=job, kind=ARCHIVED_EVENT_TYPE
        )
        if queued is not None:  # None: the event was made already
            outcomes.append(IngestOutcome(job, duplicate=False, changed=True, queued=queued))
    return outcomes


def job_with_files(conn: sqlite3.Connection, job_row: int) -> Job | None:
    row = conn.execute(_JOB_BY_ROW, (job_row,)).fetchone()
    if row is None:
        return None
    return set_files(
        job_from_row(row), (file_from_row(r) for r in conn.execute(FILES_OF_JOB_SQL, (job_row,)))
    )


def recover_files(conn: sqlite3.Connection, now: float) -> int:
    """Make every file in flight due again (the process that held them is gone); answer how many."""
    return conn.execute(
        "UPDATE files SET status = 'pending', next_attempt_at = ?, updated_at = ? WHERE status = 'fetching'",
        (now, now),
    ).rowcount


def purged_files(conn: sqlite3.Connection, now: float, limit: int, lease_s: float) -> list[str]:
    """Up to `limit` files of purged jobs whose bytes are due to be deleted, held for `lease_s`."""
    ids = [
        row[0]
        for row in conn.execute(
            # The index's own condition, so the planner may use it (SQLite matches it as written).
            "SELECT id FROM files INDEXED BY files_due WHERE status IN ('pending', 'fetching', 'purged')"
            " AND status = 'purged' AND next_attempt_at <= ?"
            " ORDER BY next_attempt_at LIMIT ?",
            (now, limit),
        )
    ]
    conn.executemany("UPDATE files SET next_attempt_at = ? WHERE id = ?", [(now + lease_s, i) for i in ids])
    return ids


def forget_files(conn: sqlite3.Connection, file_ids: Sequence[str]) -> None:
    """Delete the rows of purged files whose bytes are gone."""
    conn.executemany("DELETE FROM files WHERE id = ? AND status = 'purged'", [(i,) for i in file_ids])


class FileMethods(Handles):
    """The `ArchiveStore` half of `SQLiteStore`: writes through its writer, reads on its reader."""

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
        return await self.writer.run(
            partial(
                claim_files,
                limit=limit,
                lease_s=lease_s,
                per_host=per_host,
                room=dict(room),
                blocked=list(blocked),
            ),
            now,
        )

    async def finish_files(self, results: Sequence[FileResult], now: float) -> list[IngestOutcome]:
        return await self.writer.run(finish_files, list(results), now)

    async def recover_files(self, now: float) -> int:
        return await self.writer.run_bulk(recover_files, now)

    async def get_file(self, file_id: str) -> tuple[ArchivedFile, str, str] | None:
        rows = list(await self._db.execute_fetchall(GET_FILE_SQL, (file_id,)))
        return (file_from_row(rows[0]), rows[0][-2], rows[0][-1]) if rows else None

    async def purged_files(self, now: float, limit: int, lease_s: float) -> list[str]:
        return await self.writer.run(purged_files, now, limit, lease_s)

    async def forget_files(self, file_ids: Sequence[str]) -> None:
        await self.writer.run(forget_files, list(file_ids))
