"""`gateway.heap.settle`: what start-up made is frozen, and the young generation waits longer."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from gateway.heap import YOUNG_THRESHOLD, settle


@pytest.fixture
def restored_collector() -> Iterator[None]:
    threshold = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*threshold)


@pytest.mark.usefixtures("restored_collector")
def test_settling_freezes_what_exists_and_raises_only_the_young_threshold() -> None:
    _, older, oldest = gc.get_threshold()
    kept = [object()]  # one of start-up's long-lived objects
    assert any(found is kept for found in gc.get_objects())  # the collector walks it
    settle()

    assert not any(found is kept for found in gc.get_objects())  # frozen: never walked again
    assert gc.get_threshold() == (YOUNG_THRESHOLD, older, oldest)


@pytest.mark.usefixtures("restored_collector")
def test_garbage_cycles_made_after_settling_are_still_collected() -> None:
    settle()

    class Node:
        partner: object = None

    first, second = Node(), Node()
    first.partner, second.partner = second, first  # a cycle: reference counts never free it
    del first, second
    assert gc.collect() >= 2
