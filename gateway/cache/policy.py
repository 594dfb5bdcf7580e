"""Which cached units to keep: S3-FIFO (Yang et al., SOSP 2023), bounded by bytes.

Why not LRU: one scan of cold objects (a crawler, a batch job reading everything once) pushes
every hot object out of an LRU. S3-FIFO admits new units into a small FIFO (a tenth of the
bytes); only those hit again while there move to the main FIFO, and a unit evicted from the
small FIFO leaves its key in a ghost FIFO, so that it goes straight to the main FIFO if it comes
back soon. One-hit wonders pass through the small FIFO without disturbing the main one. Every
operation is O(1) amortised and needs no lock (the event loop is the only caller).

The policy only decides; the tier that owns the bytes deletes what `admit` returns.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Hashable
from dataclasses import dataclass, field
from typing import Final, Generic, TypeVar

K = TypeVar("K", bound=Hashable)

SMALL_SHARE: Final = 0.1
MAX_FREQUENCY: Final = 3


@dataclass(slots=True)
class _Unit:
    size: int
    frequency: int = 0


@dataclass
class S3Fifo(Generic[K]):
    capacity: int  # bytes
    small: OrderedDict[K, _Unit] = field(default_factory=OrderedDict)
    main: OrderedDict[K, _Unit] = field(default_factory=OrderedDict)
    ghost: OrderedDict[K, None] = field(default_factory=OrderedDict)
    small_bytes: int = 0
    main_bytes: int = 0

    @property
    def used(self) -> int:
        return self.small_bytes + self.main_bytes

    def __contains__(self, key: K) -> bool:
        return key in self.small or key in self.main

    def __len__(self) -> int:
        return len(self.small) + len(self.main)

    def hit(self, key: K) -> None:
        """Record an access to a unit held (a no-op for one not held)."""
        unit = self.small.get(key) or self.main.get(key)
        if unit is not None and unit.frequency < MAX_FREQUENCY:
            unit.frequency += 1

    def admit(self, key: K, size: int) -> list[K]:
        """Hold a new unit of `size` bytes; returns the units to delete to make room (maybe the
        new one itself, when it is larger than the whole capacity)."""
        if key in self.small or key in self.main:
            self.remove(key)  # a unit held under this key before is replaced, even by a refusal
        if size > self.capacity:
            return [key]
        if key in self.ghost:
            del self.ghost[key]
            self.main[key] = _Unit(size)
            self.main_bytes += size
        else:
            self.small[key] = _Unit(size)
            self.small_bytes += size
        evicted: list[K] = []
        while self.small_bytes + self.main_bytes > self.capacity:  # `used`, one call fewer
            evicted.append(self._evict())
        return evicted

    def remove(self, key: K) -> None:
        """Forget a unit (purged, or found broken)."""
        unit = self.small.pop(key, None)
        if unit is not None:
            self.small_bytes -= unit.size
        unit = self.main.pop(key, None)
        if unit is not None:
            self.main_bytes -= unit.size

    def _evict(self) -> K:
        while True:
            if self.small and (self.small_bytes > self.capacity * SMALL_SHARE or not self.main):
                key, unit = self.small.popitem(last=False)
                self.small_bytes -= unit.size
                if unit.frequency > 0:  # hit while on probation: it is hot
                    unit.frequency = 0
                    self.main[key] = unit
                    self.main_bytes += unit.size
                    continue
                self.ghost[key] = None
                while len(self.ghost) > max(len(self.main), 1):
                    self.ghost.popitem(last=False)
                return key
            key, unit = self.main.popitem(last=False)
            if unit.frequency > 0:
                unit.frequency -= 1
                self.main[key] = unit  # another round
                continue
            self.main_bytes -= unit.size
            return key


@dataclass
class Lru(Generic[K]):
    """Plain LRU with the same interface: the baseline the benchmark compares against."""

    capacity: int
    units: OrderedDict[K, int] = field(default_factory=OrderedDict)
    used: int = 0

    def __contains__(self, key: K) -> bool:
        return key in self.units

    def __len__(self) -> int:
        return len(self.units)

    def hit(self, key: K) -> None:
        if key in self.units:
            self.units.move_to_end(key)

    def admit(self, key: K, size: int) -> list[K]:
        self.remove(key)
        if size > self.capacity:
            return [key]
        self.units[key] = size
        self.used += size
        evicted = []
        while self.used > self.capacity:
            old, old_size = self.units.popitem(last=False)
            self.used -= old_size
            evicted.append(old)
        return evicted

    def remove(self, key: K) -> None:
        size = self.units.pop(key, None)
        if size is not None:
            self.used -= size
