"""Leases on every backend: one holder at a time, renewed by its holder, taken by another once expired or
released, and released by a store that closes."""

from __future__ import annotations

from relay.store import Store, open_store
from tests.store.test_store_contract import T0

TTL = 15.0


async def test_a_free_lease_is_taken_and_refused_to_another(store: Store) -> None:
    """The first taker has it; a second holder is refused while it runs, and a third lease name is apart."""
    assert await store.take_lease("sweeper", "a", T0, TTL)
    assert not await store.take_lease("sweeper", "b", T0 + 1, TTL)
    assert await store.take_lease("other", "b", T0 + 1, TTL)


async def test_the_holder_renews_its_lease(store: Store) -> None:
    """Taking it again moves its expiry: another holder is refused past the first one, until the new one."""
    assert await store.take_lease("sweeper", "a", T0, TTL)
    assert await store.take_lease("sweeper", "a", T0 + 10, TTL)
    assert not await store.take_lease("sweeper", "b", T0 + TTL, TTL)
    assert not await store.take_lease("sweeper", "b", T0 + 10 + TTL - 0.001, TTL)
    assert await store.take_lease("sweeper", "b", T0 + 10 + TTL, TTL)


async def test_an_expired_lease_is_taken_by_another(store: Store) -> None:
    """A holder that stopped renewing loses the lease at its expiry, and cannot renew it once taken."""
    assert await store.take_lease("sweeper", "a", T0, TTL)
    assert not await store.take_lease("sweeper", "b", T0 + TTL - 0.001, TTL)
    assert await store.take_lease("sweeper", "b", T0 + TTL, TTL)
    assert not await store.take_lease("sweeper", "a", T0 + TTL + 1, TTL)


async def test_a_released_lease_is_taken_at_once(store: Store) -> None:
    """Release frees the lease before its expiry; a release by someone who does not hold it does nothing."""
    assert await store.take_lease("sweeper", "a", T0, TTL)
    await store.release_lease("sweeper", "b")
    assert not await store.take_lease("sweeper", "b", T0 + 1, TTL)
    await store.release_lease("sweeper", "a")
    assert await store.take_lease("sweeper", "b", T0 + 1, TTL)
    assert not await store.take_lease("sweeper", "a", T0 + 2, TTL)


async def test_closing_a_store_releases_its_leases(store: Store, store_url: str) -> None:
    """A relay that stops (its store closes) gives up what it held, and only that: another relay takes the
    lease at once; a lease it lost meanwhile stays with the one that took it."""
    stopping = await open_store(store_url)
    try:
        assert await stopping.take_lease("sweeper", "stopping", T0, TTL)
        assert await stopping.take_lease("lost", "stopping", T0, TTL)
        assert await store.take_lease("lost", "winner", T0 + TTL, TTL)
        assert not await stopping.take_lease("lost", "stopping", T0 + TTL, TTL)
    finally:
        await stopping.close()
    assert await store.take_lease("sweeper", "next", T0 + 1, TTL)
    assert not await store.take_lease("lost", "next", T0 + TTL + 1, TTL)
