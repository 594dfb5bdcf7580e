"""The local snapshot of the revocation view: what a gateway starts from when Redis is down."""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import signal
import stat
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway import services
from gateway.revocation.entries import Kind, Revocation
from gateway.revocation.snapshot import NoSnapshot, Snapshot, SnapshotError, parse, read, write
from gateway.revocation.view import RevocationView
from gateway.services import _SnapshotWriter
from tests.conftest import NOW
from tests.polling import eventually
from tests.unit.test_revocation_entries import entries

STORE = "redis://127.0.0.1:6379/0"
LIFETIME = 7 * 86400.0
DIGEST = "0123456789abcdef0123456789abcdef"
LIVE = [
    Revocation(Kind.TOKEN, DIGEST, NOW + 600.0),
    Revocation(Kind.SUB, "user-42", NOW + 3600.0, NOW - 10.0),
    Revocation(Kind.PREFIX, "/videos/ep1", NOW + 3600.0, NOW - 10.0),
]


def snapshot_bytes(
    items: list[Revocation] = LIVE, *, store: str = STORE, synced_at: float = NOW
) -> bytes:
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "revocations.snapshot.json"
        write(path, store=store, synced_at=synced_at, entries=items)
        return path.read_bytes()


def parsed(data: bytes, *, now: float = NOW + 1) -> Snapshot:
    return parse(data, store=STORE, now=now, max_age=LIFETIME)


# -- reading back what was written ---------------------------------------------------------------


@given(st.lists(entries, max_size=20))
def test_a_snapshot_reads_back_every_entry_still_live(items: list[Revocation]) -> None:
    found = parsed(snapshot_bytes(items), now=NOW)
    assert found == Snapshot(STORE, float(NOW), [e for e in items if e.until > NOW])


def test_entries_expired_by_the_time_it_is_read_are_left_out() -> None:
    found = parsed(snapshot_bytes(), now=NOW + 601)
    assert [e.kind for e in found.entries] == [Kind.SUB, Kind.PREFIX]


def test_a_missing_snapshot_says_there_is_none_yet(tmp_path: Path) -> None:
    with pytest.raises(NoSnapshot, match="no snapshot yet"):
        read(tmp_path / "absent.json", store=STORE, now=NOW, max_age=LIFETIME)


def test_the_snapshot_is_readable_by_its_owner_only(tmp_path: Path) -> None:
    path = tmp_path / "revocations.snapshot.json"
    write(path, store=STORE, synced_at=NOW, entries=LIVE)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


# -- what is refused -----------------------------------------------------------------------------


def test_every_snapshot_cut_short_is_refused() -> None:
    data = snapshot_bytes()
    assert data.endswith(b"}\n")  # without its final newline, it is all there
    for length in range(len(data) - 1):
        with pytest.raises(SnapshotError):
            parsed(data[:length])


def drop_line(data: bytes, number: int) -> bytes:
    lines = data.split(b"\n")
    return b"\n".join(lines[:number] + lines[number + 1 :])


@pytest.mark.parametrize(
    ("data", "why"),
    [
        (snapshot_bytes(store="redis://10.0.0.9:6379/0"), "copies another store"),
        (snapshot_bytes(synced_at=NOW - LIFETIME - 2), "longer than max_link_lifetime"),
        (snapshot_bytes(synced_at=math.nan), "synced_at must be unix seconds"),
        (drop_line(snapshot_bytes(), 2), "count does not match"),
        (snapshot_bytes().replace(b'["sub"', b'["nope"'), "entry 1: "),
        (snapshot_bytes().replace(b'"version": 1', b'"version": 2'), "of this version"),
        (b'{"entries": [], "count": 0}', "not a revocation snapshot"),
        (b"[]", "not a JSON object"),
        (b"", "incomplete or not JSON"),
    ],
    ids=[
        "another-store",
        "older-than-max-link-lifetime",
        "no-time",
        "an-entry-missing",
        "an-invalid-entry",
        "another-version",
        "no-header",
        "not-objects",
        "empty",
    ],
)
def test_a_snapshot_that_cannot_be_trusted_whole_is_refused(data: bytes, why: str) -> None:
    with pytest.raises(SnapshotError, match=why):
        parsed(data)


@given(st.binary(max_size=400))
def test_arbitrary_bytes_are_read_or_refused_never_an_other_error(data: bytes) -> None:
    with contextlib.suppress(SnapshotError):
        parsed(data)


@given(st.lists(st.sampled_from(snapshot_bytes().split(b"\n")), max_size=8))
def test_shuffled_snapshot_lines_are_read_or_refused_never_an_other_error(
    lines: list[bytes],
) -> None:
    with contextlib.suppress(SnapshotError):
        parsed(b"\n".join(lines))


# -- never half-written --------------------------------------------------------------------------


def failing_midway(error: BaseException) -> Iterator[Revocation]:
    yield from LIVE
    raise error


@pytest.mark.parametrize(
    "error",
    [OSError(28, "No space left on device"), KeyboardInterrupt()],
    ids=["disk-full", "interrupted"],
)
def test_a_write_that_fails_midway_leaves_the_previous_snapshot_and_no_temporary_file(
    tmp_path: Path, error: BaseException
) -> None:
    path = tmp_path / "revocations.snapshot.json"
    write(path, store=STORE, synced_at=NOW, entries=LIVE[:1])
    previous = path.read_bytes()

    with pytest.raises(type(error)):
        write(path, store=STORE, synced_at=NOW + 5, entries=failing_midway(error))

    assert path.read_bytes() == previous
    assert sorted(p.name for p in tmp_path.iterdir()) == [path.name]


WRITER_KILLED_MIDWAY = """
import sys
from pathlib import Path
from gateway import services
from gateway.revocation.entries import Kind, Revocation
from gateway.revocation.snapshot import write

def entries():
    for n in range(20_000):  # far more than any write buffer holds
        yield Revocation(Kind.SUB, f"user-{n}", 2_000_000_000.0, 1_999_000_000.0)
        if n == 10_000:
            print("midway", flush=True)
            sys.stdin.read()  # blocks: the test kills this process here

write(Path(sys.argv[1]), store=sys.argv[2], synced_at=1_999_000_000.0, entries=entries())
"""


def test_a_writer_killed_midway_leaves_the_previous_snapshot_whole(tmp_path: Path) -> None:
    path = tmp_path / "revocations.snapshot.json"
    write(path, store=STORE, synced_at=NOW, entries=LIVE)
    previous = path.read_bytes()
    child = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(WRITER_KILLED_MIDWAY), str(path), STORE],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    )
    assert child.stdout is not None
    try:
        assert child.stdout.readline() == b"midway\n"
        partial = [p for p in tmp_path.iterdir() if p != path]
        assert len(partial) == 1
        assert partial[0].stat().st_size > 100_000  # the new snapshot was on its way
    finally:
        os.kill(child.pid, signal.SIGKILL)
        child.wait()

    assert path.read_bytes() == previous
    assert parsed(path.read_bytes()).entries == LIVE


# -- the view: loaded, and when a snapshot is due ------------------------------------------------


def test_a_new_view_is_not_loaded() -> None:
    assert not RevocationView().loaded


def test_a_sync_loads_the_view() -> None:
    view = RevocationView()
    view.mark_synced()
    assert view.loaded


def test_a_restored_snapshot_loads_the_view_with_its_age_as_the_lag() -> None:
    view = RevocationView()
    view.restore(LIVE, synced_at=time.time() - 100)

    assert view.loaded
    assert len(view) == len(LIVE)
    assert 100 <= view.lag() < 110
    assert not view.first_sync.is_set()  # the store has still to be heard from


@pytest.mark.parametrize(
    ("applied", "full", "due"),
    [(False, False, False), (True, False, True), (False, True, True)],
    ids=["nothing-new", "an-entry-arrived", "a-full-resync"],
)
def test_a_sync_announces_a_snapshot_is_due_when_it_brought_something(
    applied: bool, full: bool, due: bool
) -> None:
    view = RevocationView()
    view.mark_synced()
    view.changed.clear()
    if applied:
        view.apply(LIVE[0])

    view.mark_synced(full=full)

    assert view.changed.is_set() is due


# -- the gateway's writer ------------------------------------------------------------------------


def writer_of_a_synced_view(path: Path) -> tuple[RevocationView, _SnapshotWriter]:
    view = RevocationView()
    writer = _SnapshotWriter(view, path, STORE)  # made before the first sync, as at start
    view.merge(LIVE)
    view.mark_synced(full=True)
    return view, writer


async def test_the_writer_writes_only_a_view_synced_since_its_last_write(tmp_path: Path) -> None:
    path = tmp_path / "revocations.snapshot.json"
    view, writer = writer_of_a_synced_view(path)
    await writer.save()
    first = path.stat().st_ino  # every write is a new file renamed over the old one

    await writer.save()
    unchanged = path.stat().st_ino
    view.mark_synced()
    await writer.save()

    assert unchanged == first
    assert path.stat().st_ino != first
    assert parsed(path.read_bytes(), now=NOW).entries == LIVE


async def test_a_view_in_sync_is_rewritten_each_period_though_nothing_changed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(services, "SNAPSHOT_EVERY", 0.01)
    monkeypatch.setattr(services, "SNAPSHOT_GAP", 0.0)
    path = tmp_path / "revocations.snapshot.json"
    view, writer = writer_of_a_synced_view(path)
    task = asyncio.create_task(writer.run())
    try:
        await eventually(path.exists)
        first = parsed(path.read_bytes(), now=time.time()).synced_at
        view.mark_synced()  # a confirmation without news: no change announced
        assert not view.changed.is_set()

        await eventually(lambda: parsed(path.read_bytes(), now=time.time()).synced_at > first)
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
