"""The store's delivery outbox: fan-out in the changing transaction, claims, order, leases, retries."""

from __future__ import annotations

from typing import Any

import orjson

from relay.models import Callback, Registration, Status
from relay.outbox_models import AttemptResult, Claim, DeliveryAttempt, DeliveryStatus, endpoint_of
from relay.store import OutboxStore, Store

T0 = 1_800_000_000.0
TIMEOUT = 900.0
SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
URL_A = "https://a.example.com/hook"
URL_B = "https://b.example.com/hook"
OK = DeliveryAttempt(T0, 200, 3.0, None, b"ok")


def callback(job_id: str, status: Status, delivery_id: str | None = None) -> Callback:
    body = orjson.dumps({"id": job_id, "status": status.value})
    return Callback(
        job_id, status, delivery_id or f"{job_id}-{status.value}", body, result={"s": status.value}
    )


# A claim's options unless a test says otherwise.
CLAIM_OPTIONS: dict[str, Any] = {"lease_s": 45.0, "per_endpoint": 8, "room": {}, "blocked": []}


async def claim(store: OutboxStore, now: float = T0, limit: int = 100, **kwargs: Any) -> list[Claim]:
    return await store.claim_deliveries(now, limit=limit, **{**CLAIM_OPTIONS, **kwargs})


async def finish(
    store: Store, c: Claim, status: DeliveryStatus, when: float | None = None, **kw: Any
) -> bool:
    attempt = OK if status == DeliveryStatus.DELIVERED else DeliveryAttempt(T0, 500, 2.0, None, b"no")
    kw.setdefault("subscription_id", c.delivery.subscription_id)
    result = AttemptResult(c.delivery.id, c.delivery.attempts, attempt, status, when, **kw)
    (recorded,) = await store.finish_deliveries([result])
    return recorded


async def test_a_final_callback_queues_a_delivery_in_its_own_transaction(store: Store) -> None:
    """The delivery exists as soon as ingest returns: same event id, due now, and the exact body."""
    sub = await store.create_subscription(URL_A, None, None, SECRET, T0)
    await store.ingest("demo", callback("j", Status.SUCCEEDED), T0, TIMEOUT)
    (event,) = await store.list_events("demo", "j")
    (delivery,) = await store.list_deliveries()
    assert (delivery.event_id, delivery.subscription_id, delivery.status) == (
        event.event_id,
        sub.id,
        DeliveryStatus.PENDING,
    )
    assert delivery.endpoint == endpoint_of(URL_A) == "https://a.example.com:443"
    (taken,) = await claim(store)
    assert orjson.loads(taken.body) == event.to_public()
    assert taken.secrets == (SECRET,)


async def test_filters_by_source_and_event_type(store: Store) -> None:
    """Source filters apply; job.running goes only to those that name it; finals by default."""
    everything = await store.create_subscription(URL_A, None, None, SECRET, T0)
    replicate = await store.create_subscription(URL_A, "replicate", None, SECRET, T0)
    running = await store.create_subscription(URL_B, "demo", ["job.running"], SECRET, T0)
    failed_only = await store.create_subscription(URL_B, None, ["job.failed"], SECRET, T0)
    await store.ingest("demo", callback("j", Status.RUNNING), T0, TIMEOUT)
    await store.ingest("demo", callback("j", Status.SUCCEEDED), T0 + 1, TIMEOUT)
    got = {(d.subscription_id, d.event_type) for d in await store.list_deliveries()}
    assert got == {(running.id, "job.running"), (everything.id, "job.succeeded")}
    assert replicate.id not in {s for s, _ in got} and failed_only.id not in {s for s, _ in got}


async def test_per_job_subscribers_get_final_events_only(store: Store) -> None:
    """A registration's subscribers get the final event, signed with signing_secret (no secrets here)."""
    await store.register(Registration("demo", "j", subscribers=(URL_A,)), T0, TIMEOUT)
    await store.ingest("demo", callback("j", Status.RUNNING), T0, TIMEOUT)
    await store.ingest("demo", callback("j", Status.FAILED), T0 + 1, TIMEOUT)
    (delivery,) = await store.list_deliveries()
    assert (delivery.url, delivery.subscription_id, delivery.event_type) == (URL_A, None, "job.failed")
    (taken,) = await claim(store, T0 + 1)
    assert taken.secrets == ()


async def test_subscriber_added_after_the_job_finished_gets_its_final_events(store: Store) -> None:
    """Registering a subscriber on a final job queues its final event(s) for that subscriber only, once."""
    await store.register(Registration("demo", "j", subscribers=(URL_A,)), T0, TIMEOUT)
    await store.ingest("demo", callback("j", Status.SUCCEEDED), T0, TIMEOUT)
    await store.register(Registration("demo", "j", subscribers=(URL_A, URL_B)), T0 + 5, TIMEOUT)
    await store.register(Registration("demo", "j", subscribers=(URL_B,)), T0 + 6, TIMEOUT)
    assert sorted(d.url for d in await store.list_deliveries()) == [URL_A, URL_B]


async def test_a_new_subscription_does_not_replay_finished_jobs(store: Store) -> None:
    """Per-source subscriptions get events made after they were created."""
    await store.ingest("demo", callback("old", Status.SUCCEEDED), T0, TIMEOUT)
    await store.create_subscription(URL_A, None, None, SECRET, T0 + 1)
    assert await store.list_deliveries() == []


async def test_a_job_reaches_a_target_in_event_order(store: Store) -> None:
    """A late result waits until the time-out before it is delivered or dead, across retries."""
    await store.create_subscription(URL_A, None, None, SECRET, T0)
    await store.register(Registration("demo", "j"), T0, TIMEOUT)
    assert await store.time_out("demo", "j", T0 + TIMEOUT) is not None
    await store.ingest("demo", callback("j", Status.SUCCEEDED), T0 + TIMEOUT + 1, TIMEOUT)
    now = T0 + TIMEOUT + 2
    (first,) = await claim(store, now)
    assert first.delivery.event_type == "job.timed_out"
    assert await finish(store, first, DeliveryStatus.RETRYING, now + 5)
    assert await claim(store, now + 1) == []  # the late result waits behind the retrying time-out
    (again,) = await claim(store, now + 5)
    assert again.delivery.event_type == "job.timed_out" and again.delivery.attempts == 2
    assert await finish(store, again, DeliveryStatus.DEAD)
    (late,) = await claim(store, now + 5)
    assert late.delivery.event_type == "job.succeeded"


async def test_attempts_recorded_with_a_claim_free_the_next_event_in_that_claim(store: Store) -> None:
    """A claim records the attempts handed to it first, in the same call: the job's next event, held behind
    the one just delivered, is taken at once (a round costs one call to the store, whatever the backend)."""
    await store.create_subscription(URL_A, None, None, SECRET, T0)
    await store.register(Registration("demo", "j"), T0, TIMEOUT)
    assert await store.time_out("demo", "j", T0 + TIMEOUT) is not None
    await store.ingest("demo", callback("j", Status.SUCCEEDED), T0 + TIMEOUT + 1, TIMEOUT)
    now = T0 + TIMEOUT + 2
    (first,) = await claim(store, now)
    assert await claim(store, now) == []  # the late result waits behind the time-out in flight
    delivered = AttemptResult(first.delivery.id, first.delivery.attempts, OK, DeliveryStatus.DELIVERED)
    (late,) = await claim(store, now, finished=[delivered])
    assert late.delivery.event_type == "job.succeeded"
    (recorded,) = (d for d in await store.list_deliveries() if d.id == first.delivery.id)
    assert recorded.status == DeliveryStatus.DELIVERED and len(recorded.history) == 1


async def test_order_is_per_target(store: Store) -> None:
    """One target's failing delivery does not hold back another target's deliveries of the same job."""
    await store.create_subscription(URL_A, None, None, SECRET, T0)
    await store.create_subscription(URL_B, None, None, SECRET, T0)
    await store.register(Registration("demo", "j"), T0, TIMEOUT)
    await store.time_out("demo", "j", T0 + TIMEOUT)
    await store.ingest("demo", callback("j", Status.SUCCEEDED), T0 + TIMEOUT, TIMEOUT)
    now = T0 + TIMEOUT
    taken = await claim(store, now)
    assert {(c.delivery.url, c.delivery.event_type) for c in taken} == {
        (URL_A, "job.timed_out"),
        (URL_B, "job.timed_out"),
    }
    a = next(c for c in taken if c.delivery.url == URL_A)
    await finish(store, a, DeliveryStatus.DELIVERED)
    (next_a,) = await claim(store, now)
    assert (next_a.delivery.url, next_a.delivery.event_type) == (URL_A, "job.succeeded")


async def test_a_claim_is_leased_and_an_expired_lease_is_due_again(store: Store) -> None:
    """Claimed work is not claimed twice while leased; after the lease the old claim's token is stale."""
    await store.create_subscription(URL_A, None, None, SECRET, T0)
    await store.ingest("demo", callback("j", Status.SUCCEEDED), T0, TIMEOUT)
    (first,) = await claim(store, T0, lease_s=45)
    assert (await store.list_deliveries())[0].status == DeliveryStatus.DELIVERING
    assert await claim(store, T0 + 44) == []
    (second,) = await claim(store, T0 + 45)
    assert second.delivery.attempts == first.delivery.attempts + 1
    assert not await finish(store, first, DeliveryStatus.DELIVERED)  # the lost lease's answer is not taken
    assert await finish(store, second, DeliveryStatus.DELIVERED)
    (delivery,) = await store.list_deliveries()
    assert delivery.status == DeliveryStatus.DELIVERED and len(delivery.history) == 2


async def test_claims_respect_limits_rooms_and_blocked_endpoints(store: Store) -> None:
    """Per-endpoint room, blocked endpoints and the overall limit bound a claim."""
    await store.create_subscription(URL_A, None, None, SECRET, T0)
    await store.create_subscription(URL_B, None, None, SECRET, T0)
    for i in range(5):
        await store.ingest("demo", callback(f"j{i}", Status.SUCCEEDED), T0, TIMEOUT)
    a, b = endpoint_of(URL_A), endpoint_of(URL_B)
    taken = await claim(store, per_endpoint=2, room={b: 1})
    assert sorted(c.delivery.endpoint for c in taken) == [a, a, b]
    taken = await claim(store, per_endpoint=8, blocked=[a])
    assert {c.delivery.endpoint for c in taken} == {b} and len(taken) == 4
    assert len(await claim(store, limit=2)) == 2


async def test_finish_schedules_the_retry_and_counts_failures(store: Store) -> None:
    """A retrying delivery is due at its time; a quick retry does not count against the schedule."""
    await store.create_subscription(URL_A, None, None, SECRET, T0)
    await store.ingest("demo", callback("j", Status.SUCCEEDED), T0, TIMEOUT)
    (c,) = await claim(store)
    assert await finish(store, c, DeliveryStatus.RETRYING, T0, quick=True)
    (c,) = await claim(store)
    assert c.delivery.failures == 0 and c.delivery.quick_retried
    await finish(store, c, DeliveryStatus.RETRYING, T0 + 5)
    assert await claim(store, T0 + 4.9) == []
    (c,) = await claim(store, T0 + 5)
    assert c.delivery.failures == 1
    await finish(store, c, DeliveryStatus.DELIVERED)
    (delivery,) = await store.list_deliveries()
    assert [a.status_code for a in delivery.history] == [500, 500, 200]
    assert delivery.history[-1].response == b"ok" and delivery.delivered_at is not None


async def test_410_disables_the_subscription_and_gives_up_its_queue(store: Store) -> None:
    """The subscription is disabled, its other deliveries die, and no new ones are made for it."""
    sub = await store.create_subscription(URL_A, None, None, SECRET, T0)
    await store.ingest("demo", callback("j1", Status.SUCCEEDED), T0, TIMEOUT)
    await store.ingest("demo", callback("j2", Status.SUCCEEDED), T0, TIMEOUT)
    (first,) = await claim(store, per_endpoint=1)
    await finish(store, first, DeliveryStatus.DEAD, disable_subscription="410 Gone")
    disabled = await store.get_subscription(sub.id)
    assert disabled is not None and disabled.disabled_reason == "410 Gone"
    assert {d.status for d in await store.list_deliveries()} == {DeliveryStatus.DEAD}
    await store.ingest("demo", callback("j3", Status.SUCCEEDED), T0, TIMEOUT)
    assert len(await store.list_deliveries()) == 2


async def test_deleting_a_subscription_gives_up_what_it_had_queued(store: Store) -> None:
    """Its unsent deliveries stay listed as dead; one in flight cannot be claimed again."""
    sub = await store.create_subscription(URL_A, None, None, SECRET, T0)
    await store.ingest("demo", callback("j1", Status.SUCCEEDED), T0, TIMEOUT)
    (in_flight,) = await claim(store)
    await store.ingest("demo", callback("j2", Status.SUCCEEDED), T0, TIMEOUT)
    assert await store.delete_subscription(sub.id, T0 + 1)
    assert not await store.delete_subscription(sub.id, T0 + 1)
    assert await store.list_subscriptions() == []
    await finish(store, in_flight, DeliveryStatus.RETRYING, T0 + 2)
    assert await claim(store, T0 + 60) == []
    dead = await store.list_deliveries(status=DeliveryStatus.DEAD)
    assert {d.last_error for d in dead} == {"subscription deleted"} and len(dead) == 2


async def test_retry_requeues_with_a_fresh_schedule_but_not_in_flight(store: Store) -> None:
    """A dead or delivered delivery can be sent again now; one in flight cannot."""
    await store.create_subscription(URL_A, None, None, SECRET, T0)
    await store.ingest("demo", callback("j", Status.SUCCEEDED), T0, TIMEOUT)
    (c,) = await claim(store)
    assert await store.retry_delivery(c.delivery.id, T0) is None
    await finish(store, c, DeliveryStatus.DEAD)
    retried = await store.retry_delivery(c.delivery.id, T0 + 100)
    assert retried is not None and retried.status == DeliveryStatus.PENDING and retried.failures == 0
    (again,) = await claim(store, T0 + 100)
    assert again.delivery.event_id == c.delivery.event_id
    assert await store.retry_delivery(999_999, T0) is None


async def test_a_claim_whose_lease_lapsed_is_taken_again(store: Store) -> None:
    """A delivery claimed by a relay that died goes out again once its lease ends, with a new token."""
    await store.create_subscription(URL_A, None, None, SECRET, T0)
    await store.ingest("demo", callback("j", Status.SUCCEEDED), T0, TIMEOUT)
    (first,) = await claim(store, lease_s=60)
    assert await claim(store, T0 + 59) == []
    (again,) = await claim(store, T0 + 60)
    assert (again.delivery.id, again.delivery.attempts) == (first.delivery.id, first.delivery.attempts + 1)


async def test_rotation_signs_with_both_secrets_for_the_overlap(store: Store) -> None:
    """After a rotation the claim carries the new and the old secret until the overlap ends."""
    sub = await store.create_subscription(URL_A, None, None, SECRET, T0)
    rotated = await store.rotate_subscription_secret(sub.id, "whsec_bmV3", T0, 86_400)
    assert rotated is not None and rotated.secrets(T0 + 1) == ("whsec_bmV3", SECRET)
    assert rotated.secrets(T0 + 86_400) == ("whsec_bmV3",)
    await store.ingest("demo", callback("j", Status.SUCCEEDED), T0 + 10, TIMEOUT)
    (c,) = await claim(store, T0 + 10)
    assert c.secrets == ("whsec_bmV3", SECRET)
    assert await store.rotate_subscription_secret("sub_nope", "whsec_bmV3", T0, 1) is None


async def test_listing_filters_and_pages(store: Store) -> None:
    """Filters by status, source, job and subscription; pages newest first by cursor."""
    sub = await store.create_subscription(URL_A, None, None, SECRET, T0)
    for i in range(5):
        await store.ingest("demo", callback(f"j{i}", Status.SUCCEEDED), T0, TIMEOUT)
    await store.ingest("replicate", callback("r", Status.FAILED), T0, TIMEOUT)
    assert [d.job_id for d in await store.list_deliveries(source="replicate")] == ["r"]
    assert [d.job_id for d in await store.list_deliveries(job_id="j3")] == ["j3"]
    assert len(await store.list_deliveries(subscription_id=sub.id)) == 6
    page = await store.list_deliveries(limit=4)
    rest = await store.list_deliveries(limit=4, before=page[-1].id)
    assert [d.job_id for d in page + rest] == ["r", "j4", "j3", "j2", "j1", "j0"]
    assert await store.list_deliveries(status=DeliveryStatus.DELIVERED) == []
    assert await store.get_delivery(page[0].id) == page[0]
    assert await store.get_delivery(12345) is None


async def test_retention_purges_deliveries_with_their_jobs(store: Store) -> None:
    """A purged job's deliveries and attempts go with it."""
    await store.create_subscription(URL_A, None, None, SECRET, T0)
    await store.ingest("demo", callback("j", Status.SUCCEEDED), T0, TIMEOUT)
    (c,) = await claim(store)
    await finish(store, c, DeliveryStatus.DELIVERED)
    assert await store.purge_finished(T0 + 1, 10) == 1
    assert await store.list_deliveries() == []
