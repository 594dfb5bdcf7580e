"""The machine to one test for a while, though the suite runs in several xdist workers.

    with alone():
        ...  # no other worker of this run is inside a test meanwhile

For a measurement whose own figures steer it: the cache benchmark's quick run sizes its cold
pool from a rate it has just measured, and a neighbour's load starting or stopping between the
two made the pool too small. Every test, its fixtures' set-up and tear-down included, holds a
shared lock (`sharing`, around each test's run protocol in tests/conftest.py) and `alone()` the
exclusive one, both on a file in the directory of the run's basetemps; a turnstile taken
before either lets a waiting `alone()` in ahead of later tests. Outside xdist both do nothing.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path
from typing import IO

_ROOM = "machine.lock"
_TURNSTILE = "machine-turnstile.lock"


class _Locks:
    """This worker's two lock files (in the directory every worker of the run shares), and
    whether it holds the shared lock right now."""

    directory: Path | None = None
    room: IO[bytes] | None = None
    sharing = False

    def open(self, directory: Path) -> None:
        self.directory = directory
        self.room = (directory / _ROOM).open("ab")

    @contextlib.contextmanager
    def turnstile(self) -> Iterator[None]:
        assert self.directory is not None
        with (self.directory / _TURNSTILE).open("ab") as gate:
            fcntl.flock(gate, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(gate, fcntl.LOCK_UN)


_locks = _Locks()


def in_xdist_worker() -> bool:
    return "PYTEST_XDIST_WORKER" in os.environ


def open_locks(run_directory: Path) -> None:
    """Called once per worker with the directory all the run's workers share."""
    if in_xdist_worker():
        _locks.open(run_directory)


@contextlib.contextmanager
def sharing() -> Iterator[None]:
    """Held around every test: many tests at once, but none while some `alone()` runs."""
    locks = _locks
    room = locks.room
    if room is None:
        yield
        return
    with locks.turnstile():  # behind an alone() that is waiting or running
        fcntl.flock(room, fcntl.LOCK_SH)
    locks.sharing = True
    try:
        yield
    finally:
        locks.sharing = False
        fcntl.flock(room, fcntl.LOCK_UN)


@contextlib.contextmanager
def alone() -> Iterator[None]:
    """The block runs while no other worker is inside a test (it waits for theirs to end)."""
    locks = _locks
    room = locks.room
    if room is None:
        yield
        return
    was_sharing = locks.sharing
    with locks.turnstile():
        if was_sharing:
            fcntl.flock(room, fcntl.LOCK_UN)  # this worker's own share would block it
        fcntl.flock(room, fcntl.LOCK_EX)
    try:
        yield
    finally:
        fcntl.flock(room, fcntl.LOCK_SH if was_sharing else fcntl.LOCK_UN)
