"""Eviction policy of the edge cache (`gateway.cache.policy`): S3-FIFO, bounded by bytes, and
the plain LRU it is compared with.

A trace is replayed the way a tier uses a policy: a unit held is a hit (`hit`), one not held
is a miss and is admitted (`admit`), and whatever `admit` returns is gone.
"""

from __future__ import annotations

from collections.abc import Iterable

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.cache.policy import Lru, S3Fifo

Policy = S3Fifo[str] | Lru[str]
POLICIES = {"s3fifo": S3Fifo[str], "lru": Lru[str]}


def replay(policy: Policy, trace: Iterable[str], size: int = 1) -> int:
    """Hits of `trace` (every unit `size` bytes)."""
    hits = 0
    for key in trace:
        if key in policy:
            policy.hit(key)
            hits += 1
        else:
            policy.admit(key, size)
    return hits


HOT = [f"hot-{n}" for n in range(50)]  # half the capacity, requested over and over
SCAN = [f"cold-{n}" for n in range(1000)]  # one crawler reading everything once


@pytest.mark.parametrize(
    ("name", "hot_hits_after_scan"),
    [("s3fifo", len(HOT)), ("lru", 0)],
)
def test_one_scan_of_cold_objects_flushes_lru_but_s3fifo_keeps_the_hot_set(
    name: str, hot_hits_after_scan: int
) -> None:
    policy = POLICIES[name](capacity=100)
    replay(policy, HOT * 5)
    replay(policy, SCAN)
    assert replay(policy, HOT) == hot_hits_after_scan


@pytest.mark.parametrize("name", POLICIES)
def test_a_unit_larger_than_the_capacity_is_refused_and_evicts_nothing(name: str) -> None:
    policy = POLICIES[name](capacity=100)
    policy.admit("small", 60)
    assert policy.admit("huge", 101) == ["huge"]
    assert "huge" not in policy
    assert "small" in policy
    assert policy.used == 60


@pytest.mark.parametrize("name", POLICIES)
def test_a_held_unit_replaced_by_one_too_large_is_forgotten_with_its_bytes(name: str) -> None:
    """The tier deletes what `admit` returns: the policy must not keep counting it."""
    policy = POLICIES[name](capacity=100)
    policy.admit("a", 10)
    assert policy.admit("a", 101) == ["a"]
    assert "a" not in policy
    assert policy.used == 0


@pytest.mark.parametrize("name", POLICIES)
def test_a_removed_unit_gives_its_bytes_back(name: str) -> None:
    policy = POLICIES[name](capacity=100)
    policy.admit("a", 70)
    policy.remove("a")
    assert "a" not in policy
    assert policy.used == 0
    assert policy.admit("b", 100) == []


def test_a_unit_evicted_on_probation_that_comes_back_soon_is_held_as_hot() -> None:
    """The ghost FIFO: a key seen again shortly after it left the small FIFO goes straight to
    the main FIFO, so the next scan does not push it out."""
    policy = S3Fifo[str](capacity=10)
    policy.admit("returning", 1)
    for n in range(10):
        policy.admit(f"filler-{n}", 1)
    assert "returning" not in policy
    policy.admit("returning", 1)
    assert "returning" in policy.main


operations = st.lists(
    st.tuples(
        st.sampled_from(["admit", "hit", "remove"]),
        st.integers(0, 10),  # the key
        st.integers(1, 60),  # the size, for admit
    ),
    max_size=200,
)


@pytest.mark.parametrize("name", POLICIES)
@given(capacity=st.integers(1, 100), ops=operations)
def test_the_bytes_held_never_exceed_the_capacity_and_are_the_sizes_of_the_units_held(
    name: str, capacity: int, ops: list[tuple[str, int, int]]
) -> None:
    policy = POLICIES[name](capacity=capacity)
    held: dict[str, int] = {}
    for operation, number, size in ops:
        key = str(number)
        if operation == "admit":
            held[key] = size
            for evicted in policy.admit(key, size):
                held.pop(evicted, None)
        elif operation == "hit":
            policy.hit(key)
        else:
            policy.remove(key)
            held.pop(key, None)
        assert policy.used <= capacity
        assert set(held) == {str(n) for n in range(11) if str(n) in policy}
        assert policy.used == sum(held.values())
        assert len(policy) == len(held)
