"""The collector tuning `relay serve` applies once startup is done."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from relay.server import _YOUNG_GENERATION_THRESHOLD, _tune_gc


@pytest.fixture
def restored_gc() -> Iterator[None]:
    thresholds = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*thresholds)


@pytest.mark.usefixtures("restored_gc")
def test_startup_objects_are_frozen_and_young_collections_rarer() -> None:
    """Objects alive at startup leave the collector's passes; gen 0 waits for more allocations."""
    older = gc.get_threshold()[1:]
    _tune_gc()
    assert gc.get_freeze_count() > 0
    assert gc.get_threshold() == (_YOUNG_GENERATION_THRESHOLD, *older)
