"""(h): the cache's eviction policy next to plain LRU, on one synthetic trace (a simulation).

The trace: 10,000 objects requested with Zipf(alpha = 1) popularity (the k-th most popular is
asked for in proportion to 1/k), and in the middle of it one scan of 5,000 objects never seen
before, each asked for once (a crawler, a batch job). Object sizes are log-normal around
64 KiB (sigma 1.5, 1 KiB to 4 MiB: thumbnails and images up to video segments, each one cache
unit as one slice is), drawn independently of popularity. The cache holds 10 % of the
objects' bytes. Each policy sees every request: a held unit is a hit (`hit`), any other is a
miss and is admitted (`admit`, which evicts to make room), as the cache's tiers do.

Everything is drawn from one seeded generator, so a trace, and the figures, are reproducible.
"""

from __future__ import annotations

import bisect
import itertools
import math
import random
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Final, Protocol

from gateway.cache.policy import Lru, S3Fifo

OBJECTS: Final = 10_000
SCAN_OBJECTS: Final = 5_000
CACHE_SHARE: Final = 0.10  # of the Zipf objects' bytes
ALPHA: Final = 1.0
MEDIAN_SIZE: Final = 64 * 1024
SIZE_SIGMA: Final = 1.5
MIN_SIZE: Final = 1024
MAX_SIZE: Final = 4 * 1024 * 1024
SEED: Final = 17


class Policy(Protocol):
    """What the tiers ask of a policy (gateway.cache.policy's S3Fifo and Lru)."""

    def __contains__(self, key: int) -> bool: ...
    def hit(self, key: int) -> None: ...
    def admit(self, key: int, size: int) -> list[int]: ...


@dataclass(frozen=True)
class Trace:
    """Requests as object ids, with every object's size; `scan` is where the scan's requests
    sit in `requests` (start, end)."""

    requests: list[int]
    sizes: dict[int, int]
    scan: tuple[int, int]

    @property
    def capacity(self) -> int:
        """The cache: CACHE_SHARE of the bytes of the objects the Zipf part asks for."""
        return round(CACHE_SHARE * sum(self.sizes[i] for i in range(OBJECTS)))


def zipf_sampler(count: int, alpha: float, rng: random.Random) -> Callable[[], int]:
    """Draws ranks 0..count-1, rank k with probability proportional to 1 / (k + 1) ** alpha."""
    cumulative = list(itertools.accumulate(1 / (k + 1) ** alpha for k in range(count)))
    total = cumulative[-1]
    return lambda: min(bisect.bisect_left(cumulative, rng.random() * total), count - 1)


def size_of(rng: random.Random) -> int:
    size = round(rng.lognormvariate(math.log(MEDIAN_SIZE), SIZE_SIGMA))
    return min(max(size, MIN_SIZE), MAX_SIZE)


def make_trace(requests: int, *, seed: int = SEED) -> Trace:
    """`requests` Zipf requests over OBJECTS objects, with the SCAN_OBJECTS-long scan of new
    objects (ids from OBJECTS on) inserted in the middle."""
    rng = random.Random(seed)
    sizes = {i: size_of(rng) for i in range(OBJECTS + SCAN_OBJECTS)}
    by_rank = list(range(OBJECTS))
    rng.shuffle(by_rank)  # popularity independent of id, and so of size
    draw = zipf_sampler(OBJECTS, ALPHA, rng)
    zipf = [by_rank[draw()] for _ in range(requests)]
    middle = requests // 2
    scan = list(range(OBJECTS, OBJECTS + SCAN_OBJECTS))
    return Trace(zipf[:middle] + scan + zipf[middle:], sizes, (middle, middle + SCAN_OBJECTS))


@dataclass
class Tally:
    requests: int = 0
    hits: int = 0
    bytes: int = 0
    hit_bytes: int = 0

    @property
    def ratio(self) -> float:
        return self.hits / self.requests if self.requests else 0.0

    @property
    def byte_ratio(self) -> float:
        return self.hit_bytes / self.bytes if self.bytes else 0.0


@dataclass
class Simulated:
    """One policy's hits over a trace: all of it, and the parts before and after the scan
    (the scan's own requests are all misses for every policy)."""

    policy: str
    total: Tally = field(default_factory=Tally)
    before: Tally = field(default_factory=Tally)
    after: Tally = field(default_factory=Tally)
    recovery: Tally = field(default_factory=Tally)  # the first SCAN_OBJECTS requests after it


def simulate(name: str, policy: Policy, trace: Trace) -> Simulated:
    found = Simulated(name)
    start, end = trace.scan
    for position, key in enumerate(trace.requests):
        size = trace.sizes[key]
        hit = key in policy
        if hit:
            policy.hit(key)
        else:
            policy.admit(key, size)
        tallies: Iterable[Tally] = [found.total]
        if position < start:
            tallies = [found.total, found.before]
        elif position >= end:
            tallies = [found.total, found.after]
            if position < end + SCAN_OBJECTS:
                tallies.append(found.recovery)
        for tally in tallies:
            tally.requests += 1
            tally.bytes += size
            if hit:
                tally.hits += 1
                tally.hit_bytes += size
    return found


def compare(trace: Trace) -> list[Simulated]:
    """S3-FIFO (the cache's policy) and plain LRU, each with the trace's capacity."""
    capacity = trace.capacity
    policies: Sequence[tuple[str, Policy]] = [
        ("S3-FIFO", S3Fifo[int](capacity)),
        ("LRU", Lru[int](capacity)),
    ]
    return [simulate(name, policy, trace) for name, policy in policies]
