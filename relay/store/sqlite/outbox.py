"""The delivery outbox for SQLite.

The functions taking a `conn` run on the group-commit writer's connection, inside the batch's transaction;
`fan_out` runs inside the transaction that changed the job (called by `record_callback`), so a result is
never stored without its deliveries queued. How rows map to models is in relay/store/outbox_rows.py.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Collection, Iterable, Iterator, Mapping, Sequence

import orjson

from relay.domain.outbox import (
    Target,
    backfill_targets,
    backfilled_events,
    candidate_window,
    claimable,
    delivery_body,
    dispatch,
    ended_at,
    targets_for,
)
from relay.domain.progress import coalesces
from relay.models import Event, Job
from relay.outbox_models import AttemptResult, Claim, Delivery, Subscription, endpoint_of
from relay.store.outbox_rows import (
    ATTEMPT_COLUMNS,
    DELIVERY_COLUMNS,
    GET_SUBSCRIPTION_SQL,
    UNSETTLED,
    attempt_values,
    delivery_from_row,
    settlement_values,
    subscription_from_row,
)
from relay.store.rows import BACKFILL_EVENTS_SQL, events_from_rows
from relay.store.sqlite.reads import GET_DELIVERY_SQL
from relay.store.sqlite.subscriptions import disable, recipients

__all__ = [
    "backfill",
    "claim",
    "fan_out",
    "finish",
    "recover",
    "retry",
]

# Due rows in time order, skipping endpoints the deliverer cannot take more for, and any delivery with an
# earlier one of the same job to the same target still unsettled (that is what keeps events in order).
_CANDIDATES_SQL = f"""
SELECT d.id, d.endpoint FROM deliveries AS d INDEXED BY deliveries_due
WHERE d.status IN {UNSETTLED} AND d.next_attempt_at <= ?
  AND d.endpoint NOT IN (SELECT value FROM json_each(?))
  AND NOT EXISTS (
      SELECT 1 FROM deliveries AS e INDEXED BY deliveries_by_job
      WHERE e.source = d.source AND e.job_id = d.job_id AND e.target = d.target
        AND e.event_row < d.event_row AND e.status IN {UNSETTLED})
ORDER BY d.next_attempt_at, d.id
LIMIT ?
"""
# One statement per claim for the rows taken, and one for their events' bodies (ids as a JSON array).
_TAKE_SQL = (
    "UPDATE deliveries SET status = 'delivering', attempts = attempts + 1, next_attempt_at = ?,"
    f" updated_at = ? WHERE id IN (SELECT value FROM json_each(?)) RETURNING {DELIVERY_COLUMNS}"
)
_BODIES_SQL = (
    "SELECT id, event_id, type, received_at, data FROM callbacks"
    " WHERE id IN (SELECT value FROM json_each(?)) AND event_id IS NOT NULL"
)
_INSERT_ATTEMPT = f"INSERT INTO delivery_attempts ({ATTEMPT_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?)"
_SETTLE_SQL = (
    "UPDATE deliveries SET status = ?, next_attempt_at = ?, updated_at = ?, last_status_code = ?,"
    " last_error = ?, delivered_at = COALESCE(?, delivered_at), failures = failures + ?,"
    " quick_retried = MAX(quick_retried, ?) WHERE id = ? AND status = 'delivering' AND attempts = ?"
)
_INSERT_DELIVERY = (
    "INSERT OR IGNORE INTO deliveries (event_row, event_id, event_type, source, job_id, subscription_id,"
    " url, target, endpoint, status, next_attempt_at, created_at, updated_at)"
    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, 'pending', ?, ?, ?)"
)


# --- the outbox -------------------------------------------------------------------------------------------


# A new progress event takes over the last delivery of its job to a target when that is an older progress
# event's, never attempted (relay/domain/progress.py `coalesces`); bound: the event's row, id, the time,
# the job's source and ID, its targets (a JSON array) and the event type.
_TAKE_OVER_SQL = """
UPDATE deliveries SET event_row = ?, event_id = ?, updated_at = ?
WHERE source = ? AND job_id = ? AND target IN (SELECT value FROM json_each(?)) AND event_type = ?
  AND status = 'pending' AND attempts = 0
  AND NOT EXISTS (
      SELECT 1 FROM deliveries AS e INDEXED BY deliveries_by_job
      WHERE e.source = deliveries.source AND e.job_id = deliveries.job_id AND e.target = deliveries.target
        AND e.event_row > deliveries.event_row)
RETURNING target
"""


def fan_out(conn: sqlite3.Connection, event: Event, job: Job, now: float) -> int:
    """Queue `event` for every subscriber that wants it, due now; answer how many deliveries were made (or
    taken over, for an event that coalesces)."""
    targets = targets_for(event.type, job, recipients(conn))
    if not targets or not coalesces(event.type):
        return _insert(conn, [event], targets, now)
    names = orjson.dumps([target for _, _, target in targets])
    bound = (event.id, event.event_id, now, event.source, event.job_id, names, event.type)
    taken = {row[0] for row in conn.execute(_TAKE_OVER_SQL, bound)}
    rest = [target for target in targets if target[2] not in taken]
    return len(taken) + _insert(conn, [event], rest, now)


def backfill(conn: sqlite3.Connection, job: Job, urls: Iterable[str], now: float) -> int:
    """Queue a final job's final event(s) for per-job subscribers added after it finished."""
    targets = backfill_targets(job, urls)
    if not targets:
        return 0
    events = events_from_rows(job, conn.execute(BACKFILL_EVENTS_SQL, (job.row_id,)))
    return _insert(conn, backfilled_events(events), targets, now)


def _insert(conn: sqlite3.Connection, events: Sequence[Event], targets: Sequence[Target], now: float) -> int:
    if not events or not targets:  # most events have no subscriber: no statement at all
        return 0
    before = conn.total_changes
    conn.executemany(
        _INSERT_DELIVERY,
        [
            (
                e.id,
                e.event_id,
                e.type,
                e.source,
                e.job_id,
                sub_id,
                url,
                target,
                endpoint_of(url),
                now,
                now,
                now,
            )
            for e in events
            for sub_id, url, target in targets
        ],
    )
    return conn.total_changes - before


def claim(
    conn: sqlite3.Connection,
    now: float,
    *,
    limit: int,
    lease_s: float,
    per_endpoint: int,
    room: Mapping[str, int],
    blocked: Collection[str],
    finished: Sequence[AttemptResult] = (),
) -> list[Claim]:
    """Record `finished` attempts, then take up to `limit` due deliveries for one attempt each, under a lease
    of `lease_s`.

    At most `room[endpoint]` (default `per_endpoint`) are taken per endpoint, none for `blocked` ones.
    A delivery whose subscription or event is gone is given up here instead of being taken.
    """
    finish(conn, finished)
    candidates = conn.execute(_CANDIDATES_SQL, (now, orjson.dumps(list(blocked)), candidate_window(limit)))
    ids = claimable(
        _until_passed_over(candidates, room, per_endpoint), limit=limit, per_endpoint=per_endpoint, room=room
    )
    if not ids:
        return []
    taken = {
        row[0]: delivery_from_row(row)
        for row in conn.execute(_TAKE_SQL, (now + lease_s, now, orjson.dumps(ids))).fetchall()
    }
    deliveries = [taken[row_id] for row_id in ids]  # in the candidates' order
    bodies = {
        row[0]: delivery_body(row[0], row[1], row[2], row[3], row[4])
        for row in conn.execute(_BODIES_SQL, (orjson.dumps(list({d.event_row for d in deliveries})),))
    }
    subscriptions: dict[str, Subscription | None] = {}
    claims: list[Claim] = []
    for delivery in deliveries:
        subscription = None
        if delivery.subscription_id is not None:
            if delivery.subscription_id not in subscriptions:
                row = conn.execute(GET_SUBSCRIPTION_SQL, (delivery.subscription_id,)).fetchone()
                subscriptions[delivery.subscription_id] = None if row is None else subscription_from_row(row)
            subscription = subscriptions[delivery.subscription_id]
        taken_now = dispatch(delivery, subscription, bodies.get(delivery.event_row), now)
        if isinstance(taken_now, str):
            _give_up(conn, delivery.id, now, taken_now)
        else:
            claims.append(taken_now)
    return claims


def _until_passed_over(
    candidates: Iterable[tuple[int, str]], room: Mapping[str, int], per_endpoint: int
) -> Iterator[tuple[int, str]]:
    """The candidates, ending once `per_endpoint` of them belonged to endpoints this claim has filled.

    Each row read costs about what a taken one does; rows of other endpoints queued behind more of a full
    endpoint's rows than that wait for a later round, as they did behind a window of 4 x limit rows.
    """
    counted: dict[str, int] = {}
    passed_over = 0
    for row_id, endpoint in candidates:
        n = counted.get(endpoint, 0)
        if n >= room.get(endpoint, per_endpoint):
            passed_over += 1
            if passed_over > per_endpoint:
                return
        counted[endpoint] = n + 1
        yield row_id, endpoint


def _give_up(conn: sqlite3.Connection, row_id: int, now: float, error: str) -> None:
    """A taken delivery that will never go out: dead, for `error`."""
    conn.execute(
        "UPDATE deliveries SET status = 'dead', next_attempt_at = NULL, last_error = ?, updated_at = ?"
        " WHERE id = ?",
        (error, now, row_id),
    )


def finish(conn: sqlite3.Connection, results: Sequence[AttemptResult]) -> list[bool]:
    """Record attempts and their deliveries' new states; False for each whose claim `token` was lost."""
    if not results:
        return []
    conn.executemany(_INSERT_ATTEMPT, [attempt_values(result) for result in results])
    kept = [bool(conn.execute(_SETTLE_SQL, settlement_values(result)).rowcount) for result in results]
    for result in results:
        if result.disable_subscription is not None and result.subscription_id is not None:
            disable(conn, result.subscription_id, result.disable_subscription, ended_at(result.attempt))
    return kept


def retry(conn: sqlite3.Connection, delivery_id: int, now: float) -> Delivery | None:
    """Queue a delivery again, due now, with a fresh retry schedule (not one in flight: None)."""
    changed = conn.execute(
        "UPDATE deliveries SET status = 'pending', next_attempt_at = ?, failures = 0, quick_retried = 0,"
        " updated_at = ? WHERE id = ? AND status != 'delivering'",
        (now, now, delivery_id),
    ).rowcount
    return delivery_from_row(conn.execute(GET_DELIVERY_SQL, (delivery_id,)).fetchone()) if changed else None


def recover(conn: sqlite3.Connection, now: float) -> int:
    """Make every in-flight delivery due again (the process that held them is gone); answer how many."""
    return conn.execute(
        "UPDATE deliveries SET status = CASE WHEN failures = 0 AND quick_retried = 0 THEN 'pending'"
        " ELSE 'retrying' END, next_attempt_at = ?, updated_at = ? WHERE status = 'delivering'",
        (now, now),
    ).rowcount
