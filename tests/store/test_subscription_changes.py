"""`update_subscription` on every backend: re-enabling after a 410, a new URL for what is not yet delivered,
new filters for what comes next, disabling, and an unknown id."""

from __future__ import annotations

from relay.models import Status
from relay.outbox_models import DeliveryStatus, SubscriptionChange, endpoint_of
from relay.store import Store
from tests.store.test_deliveries_store import SECRET, T0, TIMEOUT, URL_A, URL_B, callback, claim, finish


async def test_re_enabling_a_subscription_a_410_disabled(store: Store) -> None:
    """`enabled` True clears disabled_at and its reason; new events reach it again; the deliveries given up
    when it was disabled stay dead."""
    sub = await store.create_subscription(URL_A, None, None, SECRET, T0)
    await store.ingest("demo", callback("j1", Status.SUCCEEDED), T0, TIMEOUT)
    (taken,) = await claim(store)
    await finish(store, taken, DeliveryStatus.DEAD, disable_subscription="410 Gone")
    enabled = await store.update_subscription(sub.id, SubscriptionChange(enabled=True), T0 + 1)
    assert enabled is not None and (enabled.disabled_at, enabled.disabled_reason) == (None, None)
    assert enabled == await store.get_subscription(sub.id)
    await store.ingest("demo", callback("j2", Status.SUCCEEDED), T0 + 2, TIMEOUT)
    by_job = {d.job_id: d.status for d in await store.list_deliveries()}
    assert by_job == {"j1": DeliveryStatus.DEAD, "j2": DeliveryStatus.PENDING}


async def test_a_new_url_takes_the_deliveries_not_yet_delivered(store: Store) -> None:
    """A delivered one keeps the URL it went to; pending, retrying and dead ones go to the new URL."""
    sub = await store.create_subscription(URL_A, None, None, SECRET, T0)
    for job_id in ("delivered", "retrying", "pending"):
        await store.ingest("demo", callback(job_id, Status.SUCCEEDED), T0, TIMEOUT)
    first, second = await claim(store, limit=2)
    await finish(store, first, DeliveryStatus.DELIVERED)
    await finish(store, second, DeliveryStatus.RETRYING, T0 + 60)
    changed = await store.update_subscription(sub.id, SubscriptionChange(url=URL_B), T0 + 1)
    assert changed is not None and changed.url == URL_B
    urls = {d.job_id: (d.url, d.endpoint) for d in await store.list_deliveries()}
    assert urls == {
        "delivered": (URL_A, endpoint_of(URL_A)),
        "retrying": (URL_B, endpoint_of(URL_B)),
        "pending": (URL_B, endpoint_of(URL_B)),
    }
    assert {c.delivery.url for c in await claim(store, T0 + 61)} == {URL_B}


async def test_new_filters_apply_to_the_next_events(store: Store) -> None:
    """A source and events set by a change pick the events made after it; None again means all."""
    sub = await store.create_subscription(URL_A, None, None, SECRET, T0)
    only_failed = SubscriptionChange(source="demo", events=("job.failed",))
    changed = await store.update_subscription(sub.id, only_failed, T0)
    assert changed is not None and (changed.source, changed.events) == ("demo", ("job.failed",))
    await store.ingest("demo", callback("ok", Status.SUCCEEDED), T0, TIMEOUT)
    await store.ingest("other", callback("other", Status.FAILED), T0, TIMEOUT)
    await store.ingest("demo", callback("bad", Status.FAILED), T0, TIMEOUT)
    assert [d.job_id for d in await store.list_deliveries()] == ["bad"]
    back = await store.update_subscription(sub.id, SubscriptionChange(source=None, events=None), T0)
    assert back is not None and (back.source, back.events) == (None, None)
    await store.ingest("other", callback("again", Status.SUCCEEDED), T0, TIMEOUT)
    assert {d.job_id for d in await store.list_deliveries()} == {"bad", "again"}


async def test_disabling_gives_up_the_unsent_deliveries(store: Store) -> None:
    """`enabled` False disables it as a 410 does; a second disable keeps the first reason; nothing changed
    leaves it as it was."""
    sub = await store.create_subscription(URL_A, None, None, SECRET, T0)
    await store.ingest("demo", callback("j", Status.SUCCEEDED), T0, TIMEOUT)
    disabled = await store.update_subscription(sub.id, SubscriptionChange(enabled=False), T0 + 1)
    assert disabled is not None and disabled.disabled_at == T0 + 1
    assert disabled.disabled_reason == "disabled through the API"
    (dead,) = await store.list_deliveries()
    assert (
        dead.status == DeliveryStatus.DEAD
        and dead.last_error == "subscription disabled: disabled through the API"
    )
    again = await store.update_subscription(sub.id, SubscriptionChange(enabled=False), T0 + 2)
    assert again == disabled
    assert await store.update_subscription(sub.id, SubscriptionChange(), T0 + 3) == disabled
    await store.ingest("demo", callback("later", Status.SUCCEEDED), T0, TIMEOUT)
    assert len(await store.list_deliveries()) == 1


async def test_an_unknown_subscription_is_none(store: Store) -> None:
    """No such id: None, and nothing else changes."""
    assert await store.update_subscription("sub_nope", SubscriptionChange(url=URL_B), T0) is None
