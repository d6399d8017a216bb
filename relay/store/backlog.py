"""What an operator alerts on, read from the shared database in one bounded statement (the backends'
backlog.py run it): each subscription's deliveries due, in flight and dead, the oldest due delivery, and open
jobs past their deadline.

Every count is a range of an index (deliveries_by_subscription, jobs_open_deadline) read up to `COUNT_CAP`
entries, and the oldest due delivery is the first entry of deliveries_due: a scrape costs at most
3 * COUNT_CAP index entries per subscription, however large the tables grow.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from relay.models import record
from relay.store.outbox_rows import UNSETTLED
from relay.store.rows import OPEN

__all__ = ["COUNT_CAP", "Backlog", "TargetBacklog", "backlog_from_rows", "backlog_sql", "capped_count"]

# A count stops here: past it an alert fires anyway, and a scrape must not read a million index entries.
COUNT_CAP = 10_000


@record
class TargetBacklog:
    """One subscription's deliveries (None: every job's own subscribers together), each count capped."""

    subscription_id: str | None
    due: int  # waiting for an attempt whose time has come (or whose claim's lease ran out)
    in_flight: int  # claimed, lease running
    dead: int


@record
class Backlog:
    targets: tuple[TargetBacklog, ...]
    oldest_due_at: float | None  # when the longest-waiting due delivery became due; None when none is
    overdue_jobs: int  # open jobs past their deadline, capped


def _counts(target: str, now: str, deliveries: str) -> str:
    """Due, in flight and dead deliveries of `target` (an SQL condition on subscription_id), each capped.

    Due is what the deliverer's claim takes: undelivered and its time come, an expired lease included."""
    states = (
        f"status IN {UNSETTLED} AND next_attempt_at <= {now}",
        f"status = 'delivering' AND next_attempt_at > {now}",
        "status = 'dead'",
    )
    return ", ".join(capped_count(deliveries, f"{target} AND {state}") for state in states)


def capped_count(relation: str, condition: str, cap: int = COUNT_CAP) -> str:
    """A scalar subquery counting `relation`'s rows that meet `condition`, reading at most `cap` of them."""
    return f"(SELECT count(*) FROM (SELECT 1 FROM {relation} WHERE {condition} LIMIT {cap}) AS capped)"


def backlog_sql(now: str, indexed: bool) -> str:
    """The statement, with `now` the backend's placeholder for the time; `indexed` pins SQLite's indexes.

    One row per subscription, then the per-job subscribers' row, which also carries the oldest due time and
    the overdue jobs (uncorrelated subqueries: each runs once)."""
    by_target = "deliveries INDEXED BY deliveries_by_subscription" if indexed else "deliveries"
    due_index = "deliveries INDEXED BY deliveries_due" if indexed else "deliveries"
    jobs = "jobs INDEXED BY jobs_open_deadline" if indexed else "jobs"
    return (
        f"SELECT s.id, {_counts('subscription_id = s.id', now, by_target)}, NULL, NULL"
        " FROM subscriptions AS s"
        f" UNION ALL SELECT NULL, {_counts('subscription_id IS NULL', now, by_target)},"
        f" (SELECT next_attempt_at FROM {due_index} WHERE status IN {UNSETTLED} AND next_attempt_at <= {now}"
        "  ORDER BY next_attempt_at LIMIT 1),"
        f" {capped_count(jobs, f'{OPEN} AND deadline <= {now}')}"
    )


def backlog_from_rows(rows: Iterable[Sequence[Any]]) -> Backlog:
    """The backlog from `backlog_sql`'s rows (the per-job row last)."""
    rows = list(rows)
    targets = tuple(TargetBacklog(row[0], row[1], row[2], row[3]) for row in rows)
    per_job = rows[-1]
    return Backlog(targets, per_job[4], per_job[5])
