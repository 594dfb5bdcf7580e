"""The cache's index and tiers (`gateway.cache.tiers`): the disk tier is rebuilt from its
directory at start-up, damaged or stray files are deleted (a miss, never served), and both tiers
stay within their bytes.

Objects here are a few hundred bytes in slices of 100, so every case is a handful of files.
"""

from __future__ import annotations

import asyncio
import os
import threading
import zlib
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import BinaryIO

import pytest

from gateway.cache import tiers as tiers_module
from gateway.cache.tiers import Cached, Tiers
from gateway.storage import ObjectMeta
from tests.polling import eventually

NOW = 1_790_000_000.0
SLICE = 100
FILM = bytes(range(256)) + b"tail"  # 260 bytes: slices of 100, 100 and 60
KEY = "films/intro.mp4"


def meta(size: int, etag: str = '"v1"') -> ObjectMeta:
    return ObjectMeta(
        size=size,
        etag=etag,
        last_modified=datetime(2026, 11, 1, 12, 0, tzinfo=UTC),
        content_type="video/mp4",
        cache_control="max-age=60",
    )


def tiers_in(directory: Path, *, disk_bytes: int = 10_000, slice_bytes: int = SLICE) -> Tiers:
    """A tier set as the gateway starts one: constructed, then loaded from its directory."""
    tiers = Tiers(
        directory,
        disk_bytes=disk_bytes,
        memory_bytes=1000,
        memory_object_bytes=50,
        slice_bytes=slice_bytes,
    )
    tiers.load()
    return tiers


def put(tiers: Tiers, key: str, data: bytes, etag: str = '"v1"') -> Cached:
    """Cache every slice of `data` on disk, the way a fill does: a temporary file, then kept."""
    cached = tiers.remember(key, meta(len(data), etag), NOW, 60.0)
    for index in range(cached.slice_count()):
        start, length = cached.slice_range(index)
        temporary = tiers.temporary()
        assert temporary is not None
        fd, path = temporary
        os.write(fd, data[start : start + length])
        os.close(fd)
        assert tiers.keep_slice(cached, index, path, zlib.crc32(data[start : start + length]))
    return cached


def held(tiers: Tiers, key: str) -> dict[int, bytes]:
    """The slices of `key` that reading would serve (each checked as a hit checks it)."""
    cached = tiers.get(key)
    if cached is None:
        return {}
    pieces = {}
    for index in sorted(cached.slices):
        piece = tiers.check(cached, index)
        if piece is not None:
            pieces[index] = Path(piece.path).read_bytes()
    return pieces


def files(directory: Path) -> set[str]:
    """Every file under `directory`, once the files dropped so far are deleted."""
    tiers_module.REAPER.wait()
    return {str(p.relative_to(directory)) for p in directory.rglob("*") if p.is_file()}


def slice_file(directory: Path, index: int) -> Path:
    (path,) = (p for p in directory.glob("*/*") if p.name.split(".")[1:2] == [str(index)])
    return path


def test_a_restarted_gateway_finds_every_disk_object_with_its_metadata_and_freshness(
    tmp_path: Path,
) -> None:
    before = tiers_in(tmp_path)
    films = {KEY: FILM, "films/other.mp4": FILM[::-1]}
    stored = {key: put(before, key, data) for key, data in films.items()}

    after = tiers_in(tmp_path)

    assert set(after.objects) == set(films)
    for key, data in films.items():
        found = after.get(key)
        assert found is not None
        assert (found.meta, found.validated, found.fresh_until) == (
            stored[key].meta,
            stored[key].validated,
            stored[key].fresh_until,
        )
        assert b"".join(held(after, key).values()) == data
    assert after.stats()["disk"] == (6, 2 * len(FILM))


def truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[:-1])


def extend(path: Path) -> None:
    path.write_bytes(path.read_bytes() + b"x")


def flip_a_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[10] ^= 0xFF
    path.write_bytes(bytes(data))


@pytest.mark.parametrize(
    "damage",
    [truncate, extend, flip_a_byte],
    ids=["truncated", "too-long", "corrupted (same size, CRC-32 differs)"],
)
def test_a_damaged_slice_is_deleted_and_becomes_a_miss_while_the_others_are_served(
    tmp_path: Path, damage: Callable[[Path], None]
) -> None:
    put(tiers_in(tmp_path), KEY, FILM)
    damaged = slice_file(tmp_path, 1)
    damage(damaged)

    after = tiers_in(tmp_path)

    assert held(after, KEY) == {0: FILM[:100], 2: FILM[200:]}
    assert not damaged.exists()


def unreadable_metadata(directory: Path) -> None:
    (meta_file,) = directory.glob("*/*.meta")
    meta_file.write_text("{not json")


def metadata_of_another_key(directory: Path) -> None:
    (meta_file,) = directory.glob("*/*.meta")
    meta_file.write_text(meta_file.read_text().replace(KEY, "films/else.mp4"))


def lost_metadata(directory: Path) -> None:
    (meta_file,) = directory.glob("*/*.meta")
    meta_file.unlink()


@pytest.mark.parametrize(
    "damage",
    [unreadable_metadata, metadata_of_another_key, lost_metadata],
    ids=["unreadable", "names another key", "lost"],
)
def test_an_object_whose_metadata_is_damaged_is_deleted_with_all_its_slices(
    tmp_path: Path, damage: Callable[[Path], None]
) -> None:
    put(tiers_in(tmp_path), KEY, FILM)
    damage(tmp_path)

    after = tiers_in(tmp_path)

    assert after.get(KEY) is None
    assert files(tmp_path) == set()


def test_half_written_and_stray_files_are_deleted_at_start_up(tmp_path: Path) -> None:
    before = tiers_in(tmp_path)
    cached = put(before, KEY, FILM)
    kept = files(tmp_path)
    (tmp_path / "tmp" / "1234-5678.part").write_bytes(FILM[:50])  # a fill cut off by a crash
    (tmp_path / cached.stem[:2] / "notes.txt").write_text("not a cache file")
    (tmp_path / cached.stem[:2] / f"{cached.stem}.x.0").write_bytes(b"?")

    after = tiers_in(tmp_path)

    assert files(tmp_path) == kept
    assert b"".join(held(after, KEY).values()) == FILM


def test_a_new_slice_size_discards_the_slices_cut_to_the_old_one(tmp_path: Path) -> None:
    put(tiers_in(tmp_path), KEY, FILM)

    after = tiers_in(tmp_path, slice_bytes=2 * SLICE)

    assert after.get(KEY) is None
    assert files(tmp_path) == set()


@pytest.mark.parametrize("bound", [2 * len(FILM), 150], ids=["two objects", "under one object"])
def test_a_smaller_disk_bound_takes_effect_at_start_up(tmp_path: Path, bound: int) -> None:
    before = tiers_in(tmp_path)
    for n in range(3):
        put(before, f"films/{n}.mp4", FILM)

    after = tiers_in(tmp_path, disk_bytes=bound)

    units, used = after.stats()["disk"]
    assert used <= bound
    tiers_module.REAPER.wait()
    indexed = {piece.path for cached in after.objects.values() for piece in cached.slices.values()}
    assert {str(p) for p in tmp_path.glob("*/*") if p.suffix != ".meta"} == indexed
    assert sum(os.path.getsize(path) for path in indexed) == used
    assert units == len(indexed)


def test_a_dropped_slice_frees_its_name_at_once_and_is_deleted_off_the_callers_thread(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    tiers = tiers_in(tmp_path)
    paths = [piece.path for piece in put(tiers, KEY, FILM).slices.values()]
    tiers_module.REAPER.wait()  # nothing of an earlier test's left to delete
    deleted: list[tuple[str, str]] = []
    unlink = os.unlink

    def recorded(path: str) -> None:
        deleted.append((threading.current_thread().name, Path(path).suffix))
        unlink(path)

    monkeypatch.setattr(os, "unlink", recorded)
    tiers.drop(KEY)

    assert not any(os.path.exists(path) for path in paths)  # the names are free at once
    tiers_module.REAPER.wait()
    assert sorted(deleted) == [("MainThread", ".meta")] + [("cache-reaper", ".gone")] * 3
    assert files(tmp_path) == set()


def test_the_disk_tier_evicts_to_stay_within_its_bytes_and_deletes_what_it_evicts(
    tmp_path: Path,
) -> None:
    tiers = tiers_in(tmp_path, disk_bytes=3 * SLICE)
    for n in range(5):
        put(tiers, f"clips/{n}.mp4", bytes([n]) * SLICE)  # one slice each

    assert tiers.stats()["disk"] == (3, 3 * SLICE)
    assert tiers.evictions["disk"] == 2
    tiers_module.REAPER.wait()
    assert len([p for p in tmp_path.glob("*/*") if p.suffix != ".meta"]) == 3
    assert len(list(tmp_path.glob("*/*.meta"))) == len(tiers.objects) == 3


def test_small_objects_live_in_memory_only_and_do_not_survive_a_restart(tmp_path: Path) -> None:
    tiers = tiers_in(tmp_path)
    cached = tiers.remember("icons/a.png", meta(40), NOW, 60.0)
    assert tiers.fits_memory(cached)
    tiers.keep_in_memory(cached, b"p" * 40)
    assert tiers.stats()["memory"] == (1, 40)
    assert files(tmp_path) == set()

    assert tiers_in(tmp_path).get("icons/a.png") is None


def test_the_memory_tier_evicts_to_stay_within_its_bytes(tmp_path: Path) -> None:
    tiers = tiers_in(tmp_path)  # 1000 bytes of memory, objects of at most 50
    for n in range(30):
        cached = tiers.remember(f"icons/{n}.png", meta(50), NOW, 60.0)
        tiers.keep_in_memory(cached, b"i" * 50)

    units, used = tiers.stats()["memory"]
    assert (units, used) == (20, 1000)
    assert tiers.evictions["memory"] == 10
    assert sum(1 for c in tiers.objects.values() if c.body is not None) == 20


def test_a_directory_that_cannot_be_used_turns_the_disk_tier_off(tmp_path: Path) -> None:
    blocked = tmp_path / "cache"
    blocked.write_text("a file where the directory should be")

    tiers = tiers_in(blocked)

    assert not tiers.disk_usable
    assert tiers.temporary() is None


@pytest.mark.parametrize("bytes_arrive", ["never", "in-memory", "on-disk"])
def test_entries_without_bytes_are_bounded_oldest_first(tmp_path: Path, bytes_arrive: str) -> None:
    """HEADs of ever new keys (or fills that could not store) must not grow the index; an
    entry that got its bytes is bounded by its tier instead, never by this."""
    tiers = tiers_in(tmp_path)
    first = tiers.remember("first", meta(40 if bytes_arrive == "in-memory" else 260), NOW, 60.0)
    if bytes_arrive == "in-memory":
        tiers.keep_in_memory(first, b"p" * 40)
    elif bytes_arrive == "on-disk":
        put(tiers, "first", FILM)
    for n in range(tiers.bare_limit):
        tiers.remember(f"head/{n}", meta(1_000_000), NOW, 60.0)

    assert len(tiers.objects) == tiers.bare_limit + (bytes_arrive != "never")
    assert (tiers.get("first") is not None) is (bytes_arrive != "never")
    assert tiers.get("head/0") is not None


def test_metadata_without_slices_is_not_reloaded_at_start_up(tmp_path: Path) -> None:
    tiers_in(tmp_path).remember(KEY, meta(len(FILM)), NOW, 60.0)  # a HEAD of a disk object

    assert tiers_in(tmp_path).get(KEY) is None
    assert files(tmp_path) == set()


@pytest.mark.parametrize("change", ["flipped-byte", "same-bytes-rewritten"])
def test_a_slice_written_to_under_a_running_gateway_is_checked_again(
    tmp_path: Path, change: str
) -> None:
    """Its CRC is read back once it is no longer the file this process last checked: a flipped
    byte is a miss at once, not wrong bytes until a restart; intact bytes are served again."""
    tiers = tiers_in(tmp_path)
    put(tiers, KEY, FILM)
    path = Path(tiers.objects[KEY].slices[1].path)
    data = bytearray(path.read_bytes())
    if change == "flipped-byte":
        data[10] ^= 0x01
    written = path.stat()
    path.write_bytes(bytes(data))
    # As a write a tick of the file system's clock later leaves it (this one may fall within
    # the tick of the slice's own write: see `fingerprint`).
    os.utime(path, ns=(written.st_atime_ns, written.st_mtime_ns + 1_000_000_000))

    expected = {0: FILM[:100], 2: FILM[200:]} | (
        {} if change == "flipped-byte" else {1: FILM[100:200]}
    )
    assert held(tiers, KEY) == expected


def test_a_failing_cache_directory_is_logged_once_until_a_write_succeeds(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    tiers = tiers_in(tmp_path)
    for _ in range(3):
        tiers.disk_failed(OSError(28, "No space left on device"))
    put(tiers, KEY, FILM)  # writes succeed again
    tiers.disk_failed(OSError(28, "No space left on device"))

    warnings = [r for r in caplog.records if "cannot write to the cache directory" in r.message]
    assert (len(warnings), tiers.disk_errors) == (2, 4)


def meta_files(directory: Path) -> list[Path]:
    return sorted(directory.glob("??/*.meta"))


def written_earlier(path: Path) -> None:
    """As a metadata file written well before the snapshot (file times tick coarsely)."""
    status = path.stat()
    os.utime(path, ns=(status.st_atime_ns, status.st_mtime_ns - 1_000_000_000))


def test_a_snapshot_taken_at_shutdown_is_read_instead_of_every_metadata_file(
    tmp_path: Path,
) -> None:
    tiers = tiers_in(tmp_path)
    put(tiers, KEY, FILM)
    put(tiers, "films/other.mp4", FILM[:150])
    for path in meta_files(tmp_path):
        written_earlier(path)
    assert tiers.save_snapshot() == 2
    for path in meta_files(tmp_path):  # unreadable now, but unchanged since the snapshot
        status = path.stat()
        path.write_text("not read")
        os.utime(path, ns=(status.st_atime_ns, status.st_mtime_ns))

    again = tiers_in(tmp_path)

    assert sorted(again.objects) == sorted(tiers.objects)
    assert again.objects[KEY].meta == tiers.objects[KEY].meta
    assert held(again, KEY) == {0: FILM[:100], 1: FILM[100:200], 2: FILM[200:]}


@pytest.mark.parametrize("after", ["refreshed", "dropped", "added"])
def test_the_directory_wins_over_a_snapshot_for_what_changed_after_it(
    tmp_path: Path, after: str
) -> None:
    tiers = tiers_in(tmp_path)
    cached = put(tiers, KEY, FILM)
    for path in meta_files(tmp_path):
        written_earlier(path)
    tiers.save_snapshot()
    if after == "refreshed":
        tiers.refresh(cached, NOW + 30, 60.0)
    elif after == "dropped":
        tiers.drop(KEY)
    else:
        put(tiers, "films/new.mp4", FILM[:150])

    again = tiers_in(tmp_path)

    if after == "refreshed":
        assert again.objects[KEY].fresh_until == NOW + 90
    elif after == "dropped":
        assert again.get(KEY) is None
    else:
        assert sorted(again.objects) == ["films/intro.mp4", "films/new.mp4"]


class Checks:
    """`tiers._crc_intact`, recording the thread each check ran on; `hold` keeps a check
    waiting inside its thread until released."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, *, hold: bool = False) -> None:
        self.threads: list[int] = []
        self.handles: list[BinaryIO] = []
        self.entered = threading.Event()
        self.release = threading.Event()
        if not hold:
            self.release.set()
        real = tiers_module._crc_intact

        def check(handle: BinaryIO, length: int, crc: int) -> bool:
            self.threads.append(threading.get_ident())
            self.handles.append(handle)
            self.entered.set()
            self.release.wait(10)
            return real(handle, length, crc)

        monkeypatch.setattr(tiers_module, "_crc_intact", check)


@pytest.mark.parametrize("damaged", [False, True], ids=["intact", "corrupted"])
async def test_a_slices_first_check_after_a_restart_reads_it_off_the_event_loop(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, damaged: bool
) -> None:
    """Reading a slice whole for its CRC takes milliseconds: in a thread, every other request
    goes on meanwhile. Once checked, a hit reads nothing; a damaged slice is a miss (dropped)."""
    put(tiers_in(tmp_path), KEY, FILM)
    if damaged:
        flip_a_byte(slice_file(tmp_path, 1))
    tiers = tiers_in(tmp_path)  # restarted: no slice checked by this process yet
    cached = tiers.objects[KEY]
    checks = Checks(monkeypatch)

    handles = [await tiers.open_slice_checked(cached, 1) for _ in range(2)]

    loop_thread = threading.get_ident()
    assert len(checks.threads) == 1  # then checked, or dropped: nothing to read again
    assert loop_thread not in checks.threads
    if damaged:
        assert handles == [None, None]
        assert 1 not in cached.slices
    else:
        assert [h.read() if h else None for h in handles] == [FILM[100:200]] * 2
    for handle in handles:
        if handle is not None:
            handle.close()


async def test_a_request_cancelled_while_its_slice_is_checked_leaves_it_to_the_thread(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The file the thread reads is closed once the thread is done with it, and the slice,
    never found damaged, stays."""
    put(tiers_in(tmp_path), KEY, FILM)
    tiers = tiers_in(tmp_path)
    cached = tiers.objects[KEY]
    checks = Checks(monkeypatch, hold=True)
    opening = asyncio.create_task(tiers.open_slice_checked(cached, 1))
    await eventually(checks.entered.is_set)

    opening.cancel()
    with pytest.raises(asyncio.CancelledError):
        await opening
    (handle,) = checks.handles
    assert not handle.closed  # still being read
    checks.release.set()

    await eventually(lambda: handle.closed)
    assert 1 in cached.slices
