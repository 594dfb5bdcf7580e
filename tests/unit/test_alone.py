"""`tests/alone.py`: while one worker is `alone()`, no other worker is inside a test. Probed
from another open file description, as another worker's lock would be (flock locks belong to
it, so a probe in this process conflicts as another process would)."""

from __future__ import annotations

import fcntl
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests import alone


@pytest.fixture
def run_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    monkeypatch.setenv("PYTEST_XDIST_WORKER", "gw0")
    locks = alone._Locks()
    monkeypatch.setattr(alone, "_locks", locks)
    alone.open_locks(tmp_path)
    yield tmp_path
    assert locks.room is not None
    locks.room.close()


def neighbour_can(directory: Path, kind: int) -> bool:
    """Whether another worker could take the room's lock of `kind` right now."""
    with (directory / "machine.lock").open("ab") as probe:
        try:
            fcntl.flock(probe, kind | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        fcntl.flock(probe, fcntl.LOCK_UN)
        return True


def test_while_a_test_runs_neighbours_run_theirs_but_none_is_alone(run_directory: Path) -> None:
    with alone.sharing():
        assert neighbour_can(run_directory, fcntl.LOCK_SH)
        assert not neighbour_can(run_directory, fcntl.LOCK_EX)
    assert neighbour_can(run_directory, fcntl.LOCK_EX)


def test_while_one_is_alone_no_neighbour_starts_a_test(run_directory: Path) -> None:
    with alone.alone():
        assert not neighbour_can(run_directory, fcntl.LOCK_SH)
    assert neighbour_can(run_directory, fcntl.LOCK_EX)


def test_alone_inside_a_test_gives_up_its_share_and_takes_it_back(run_directory: Path) -> None:
    with alone.sharing():
        with alone.alone():  # would wait for itself if it kept its share
            assert not neighbour_can(run_directory, fcntl.LOCK_SH)
        assert neighbour_can(run_directory, fcntl.LOCK_SH)
        assert not neighbour_can(run_directory, fcntl.LOCK_EX)


def test_outside_xdist_neither_locks_anything(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("PYTEST_XDIST_WORKER", raising=False)
    monkeypatch.setattr(alone, "_locks", alone._Locks())
    alone.open_locks(tmp_path)
    with alone.sharing(), alone.alone():
        pass
    assert list(tmp_path.iterdir()) == []
