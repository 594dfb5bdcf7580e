"""Where cached bytes live: the index of cached objects, a memory tier and a disk tier.

    memory   whole small objects (<= `memory_object_bytes`), as bytes: a hit is one write
    disk     fixed-size slices of everything else, one file each, surviving restarts

Every object is one version (its ETag); slices of two versions never mix, because a slice
file's name carries the version and an object's slices are dropped together when storage shows
another one. Each tier is bounded by bytes and evicts with S3-FIFO (`policy`).

Disk layout, under `cache_dir`:

    tmp/                                    slices being written, or dropped and being
                                            deleted (`REAPER`); emptied at start-up
    ab/abcdef...-<version>.meta             the object's key, metadata and freshness (JSON)
    ab/abcdef...-<version>.<slice>.<crc32>  one slice: exactly its bytes

A file only gets its final name once complete (written elsewhere, then renamed), so a crash
leaves no partial slice under a slice name; a slice whose size is not the one its object's
metadata implies (checked at start-up and at every use), or whose CRC-32 does not match when
first read by this process or read again after its file changed (`fingerprint`, one fstat per
use), is treated as a miss and deleted; requests have that CRC read done in a thread
(`open_slice_checked`), since reading a whole slice would hold up the event loop. Checking the
CRC at every read instead was measured at 1.3 s of CPU per GiB (zlib, this host), eight times
what sending the bytes costs. Writes go
straight to the page cache (no fsync: a cache may lose what the kernel had not written, and
detects it).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hashlib
import json
import logging
import os
import queue
import threading
import time
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field, fields
from datetime import datetime
from pathlib import Path
from typing import Any, BinaryIO, Final

from gateway.cache.policy import S3Fifo
from gateway.storage import ObjectMeta

log = logging.getLogger("gateway.cache")

_META: Final = ".meta"
#: The index written at shutdown (`save_snapshot`), read at start-up instead of every object's
#: metadata file: a cache of those files, each checked against the directory, never trusted
#: over them (a metadata file changed since it was taken is read itself).
SNAPSHOT: Final = "index.snapshot"
#: File times tick coarsely: a metadata file this close to the snapshot's time is read itself.
TICK_NS: Final = 20_000_000
#: Entries holding no bytes (made by a HEAD or a conditional request, or left by a fill that
#: could not store its bytes) are kept oldest-first up to this many per byte of the memory
#: tier (at least BARE_MIN): otherwise a stream of HEADs of distinct keys grew the index
#: without bound.
BARE_PER_BYTE: Final = 1 / 1024
BARE_MIN: Final = 1024


Fingerprint = tuple[int, int, int, int]


def fingerprint(status: os.stat_result) -> Fingerprint:
    """What changes whenever a file is written, truncated or replaced through the file system:
    a slice whose fingerprint is the one this process saw when it last checked the bytes needs
    no CRC again; any other is read back and checked before it is served. (File times tick
    coarsely: a write within the same tick, milliseconds, as the gateway's own write of the
    slice leaves no trace here, and is found at the next start-up's check.)"""
    return status.st_ino, status.st_size, status.st_mtime_ns, status.st_ctime_ns


@dataclass(slots=True)
class Slice:
    path: str
    length: int
    crc: int
    # The file as it was when this process wrote it or last checked its CRC (`fingerprint`);
    # None: not yet checked by this process.
    checked: Fingerprint | None = None


@dataclass(slots=True)
class Cached:
    """One version of one object in the cache."""

    key: str
    meta: ObjectMeta
    validated: float  # when storage last vouched for this version (unix seconds): Age
    fresh_until: float
    slice_bytes: int
    body: bytes | None = None  # the whole object, in the memory tier
    slices: dict[int, Slice] = field(default_factory=dict)  # the disk tier's slices

    @property
    def stem(self) -> str:
        return stem(self.key, self.meta.etag)

    def slice_range(self, index: int) -> tuple[int, int]:
        """(first byte, length) of slice `index`."""
        start = index * self.slice_bytes
        return start, max(0, min(self.slice_bytes, self.meta.size - start))

    def slice_count(self) -> int:
        return -(-self.meta.size // self.slice_bytes) if self.meta.size else 0

    def complete(self) -> bool:
        return self.body is not None or len(self.slices) == self.slice_count()


def stem(key: str, etag: str | None) -> str:
    digest = hashlib.sha256(key.encode("utf-8", "surrogateescape")).hexdigest()
    version = hashlib.sha256((etag or "").encode()).hexdigest()[:16]
    return f"{digest}-{version}"


class Tiers:
    """The index and both tiers. Not thread-safe: the event loop is the only caller."""

    def __init__(
        self,
        directory: Path | None,
        *,
        disk_bytes: int,
        memory_bytes: int,
        memory_object_bytes: int,
        slice_bytes: int,
    ) -> None:
        self.directory = directory
        self.slice_bytes = slice_bytes
        self.memory_object_bytes = memory_object_bytes
        self.objects: dict[str, Cached] = {}
        self.memory = S3Fifo[str](memory_bytes)
        self.disk = S3Fifo[tuple[str, int]](disk_bytes)
        self.evictions = {"memory": 0, "disk": 0}
        self.disk_usable = directory is not None
        self.bare: dict[str, None] = {}  # keys of entries without bytes, oldest first
        self.bare_limit = max(BARE_MIN, int(memory_bytes * BARE_PER_BYTE))
        self.disk_errors = 0  # writes to the cache directory that failed
        self._disk_failing = False  # logged already; quiet until a write succeeds again

    # -- the index --------------------------------------------------------------------------

    def get(self, key: str) -> Cached | None:
        return self.objects.get(key)

    def remember(self, key: str, meta: ObjectMeta, now: float, lifetime: float) -> Cached:
        """The entry for this version of `key` (a new version replaces the old one)."""
        current = self.objects.get(key)
        if current is None:  # a miss of a new key: nothing to replace
            self.bare.pop(key, None)  # (an entry evicted from memory may have left its key)
        elif current.meta.etag == meta.etag and current.meta == meta:
            self.refresh(current, now, lifetime)
            return current
        else:
            self.drop(key)
        cached = Cached(key, meta, now, now + lifetime, self.slice_bytes)
        self.objects[key] = cached
        self._bare(key)
        self._write_meta(cached)
        return cached

    def _bare(self, key: str) -> None:
        """`key`'s entry holds no bytes (yet): bounded, the oldest beyond the limit dropped."""
        self.bare[key] = None
        while len(self.bare) > self.bare_limit:
            oldest = next(iter(self.bare))
            del self.bare[oldest]
            cached = self.objects.get(oldest)
            if cached is not None and cached.body is None and not cached.slices:
                self.drop(oldest)

    def refresh(self, cached: Cached, now: float, lifetime: float) -> None:
        """Storage vouched for this version again (a 304): fresh for another lifetime."""
        cached.validated, cached.fresh_until = now, now + lifetime
        if cached.slices:
            self._write_meta(cached)

    def drop(self, key: str) -> bool:
        cached = self.objects.pop(key, None)
        self.bare.pop(key, None)
        if cached is None:
            return False
        if cached.body is not None:
            self.memory.remove(key)
        for index, piece in cached.slices.items():
            self.disk.remove((key, index))
            self._discard(piece.path)
        cached.slices.clear()  # a response still streaming it fetches the rest from storage
        if self.directory is not None:
            _unlink(self._meta_path(cached))
        return True

    def keys_under(self, prefix: str) -> list[str]:
        return [key for key in self.objects if key.startswith(prefix)]

    def hit(self, cached: Cached, index: int | None = None) -> None:
        if cached.body is not None:
            self.memory.hit(cached.key)
        elif index is not None:
            self.disk.hit((cached.key, index))

    # -- memory ----------------------------------------------------------------------------

    def fits_memory(self, cached: Cached) -> bool:
        return cached.meta.size <= min(self.memory_object_bytes, self.slice_bytes)

    def keep_in_memory(self, cached: Cached, body: bytes) -> None:
        if self.objects.get(cached.key) is not cached or len(body) != cached.meta.size:
            return
        cached.body = body
        self.bare.pop(cached.key, None)
        for evicted in self.memory.admit(cached.key, max(len(body), 1)):
            self.evictions["memory"] += 1
            gone = self.objects.get(evicted)
            if gone is not None and gone.body is not None:
                gone.body = None
                if not gone.slices:
                    self.objects.pop(evicted, None)

    # -- disk ------------------------------------------------------------------------------

    def temporary(self) -> tuple[int, str] | None:
        """A new temporary slice file (descriptor, path), or None when the disk tier is not
        usable (no directory, or it cannot be written)."""
        if self.directory is None or not self.disk_usable:
            return None
        path = self.directory / "tmp" / f"{os.getpid()}-{time.monotonic_ns()}.part"
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        except OSError as exc:
            self.disk_failed(exc)
            return None
        return fd, str(path)

    def disk_failed(self, exc: OSError) -> None:
        """A write to the cache directory failed: counted every time, logged once until one
        succeeds again (a full disk would otherwise log every slice of every request)."""
        self.disk_errors += 1
        if not self._disk_failing:
            self._disk_failing = True
            log.warning(
                "cache: cannot write to the cache directory (%s): bypassing it, counted in "
                "gateway_cache_bypasses_total, logged again once a write succeeds and fails",
                exc,
            )

    def keep_slice(self, cached: Cached, index: int, temporary: str, crc: int) -> bool:
        """Give a written slice its final name and admit it; False if it is no longer wanted
        (the object was dropped or replaced meanwhile) or cannot be kept."""
        length = cached.slice_range(index)[1]
        if self.objects.get(cached.key) is not cached or self.directory is None:
            _unlink(temporary)
            return False
        final = str(self._slice_path(cached, index, crc))
        try:
            os.makedirs(os.path.dirname(final), exist_ok=True)
            os.rename(temporary, final)
            written = fingerprint(os.stat(final))
        except OSError as exc:
            self.disk_failed(exc)
            _unlink(temporary)
            return False
        self._disk_failing = False
        old = cached.slices.get(index)
        if old is not None and old.path != final:
            self._discard(old.path)
        cached.slices[index] = Slice(final, length, crc, written)
        self.bare.pop(cached.key, None)
        for evicted_key, evicted_index in self.disk.admit((cached.key, index), max(length, 1)):
            self.evictions["disk"] += 1
            self._forget_slice(evicted_key, evicted_index)
        return True

    def bad_slice(self, cached: Cached, index: int) -> None:
        """A slice file turned out truncated, corrupted or gone: forget it (a miss next time).
        An entry already replaced or dropped is left alone: its key may name a newer version."""
        if self.objects.get(cached.key) is not cached:
            return
        log.warning("cache: slice %d of a cached object is damaged; dropped", index)
        self._forget_slice(cached.key, index)

    def _forget_slice(self, key: str, index: int) -> None:
        cached = self.objects.get(key)
        self.disk.remove((key, index))
        if cached is None:
            return
        piece = cached.slices.pop(index, None)
        if piece is not None:
            self._discard(piece.path)
        if not cached.slices and cached.body is None and self.directory is not None:
            self.objects.pop(key, None)
            _unlink(self._meta_path(cached))

    def _discard(self, path: str) -> None:
        """Delete a slice file without the event loop waiting for the filesystem to free its
        blocks (measured on ext4: 2.8 ms for a 4 MiB slice once written back, 0.2 ms before):
        it is renamed into tmp/ at once, which frees its name for a new slice, and deleted by
        `REAPER`'s thread (tmp/ is emptied at start-up, should the process end first)."""
        assert self.directory is not None
        aside = self.directory / "tmp" / f"{os.getpid()}-{time.monotonic_ns()}.gone"
        try:
            os.rename(path, aside)
        except OSError:
            _unlink(path)  # gone already, or tmp/ unusable: deleted here, as before
            return
        REAPER.delete(str(aside))

    def _meta_path(self, cached: Cached) -> Path:
        assert self.directory is not None
        name = cached.stem
        return self.directory / name[:2] / (name + _META)

    def _slice_path(self, cached: Cached, index: int, crc: int) -> Path:
        assert self.directory is not None
        name = cached.stem
        return self.directory / name[:2] / f"{name}.{index}.{crc:08x}"

    def _write_meta(self, cached: Cached) -> None:
        """The object's metadata next to its slices, written atomically."""
        if self.directory is None or not self.disk_usable or self.fits_memory(cached):
            return
        path = self._meta_path(cached)
        document = _meta_document(cached)
        temporary = self.directory / "tmp" / f"{path.name}.{os.getpid()}.tmp"
        try:
            os.makedirs(path.parent, exist_ok=True)
            temporary.write_text(json.dumps(document))
            os.rename(temporary, path)
        except OSError as exc:
            self.disk_failed(exc)
            _unlink(str(temporary))

    # -- start-up ----------------------------------------------------------------------------

    def load(self) -> int:
        """Rebuild the index from the directory (blocking: run in a thread at start-up).
        Returns the number of objects found; damaged or orphaned files are deleted."""
        if self.directory is None:
            return 0
        try:
            (self.directory / "tmp").mkdir(parents=True, exist_ok=True)
            for leftover in os.scandir(self.directory / "tmp"):
                _unlink(leftover.path)
        except OSError as exc:
            log.warning(
                "cache: directory %s is not usable (%s): disk tier off", self.directory, exc
            )
            self.disk_usable = False
            return 0
        taken, snapshot = _read_snapshot(self.directory / SNAPSHOT)
        found: dict[str, list[tuple[int, int, str, int]]] = {}
        metas: dict[str, os.DirEntry[str]] = {}
        for sub in _subdirectories(self.directory):
            for entry in os.scandir(sub):
                name = entry.name
                if name.endswith(_META):
                    metas[name[: -len(_META)]] = entry
                    continue
                parts = name.split(".")
                if len(parts) != 3 or not parts[1].isdigit():
                    _unlink(entry.path)
                    continue
                try:
                    crc = int(parts[2], 16)
                    size = entry.stat().st_size
                except (ValueError, OSError):
                    _unlink(entry.path)
                    continue
                found.setdefault(parts[0], []).append((int(parts[1]), crc, entry.path, size))
        for name, entry in metas.items():
            path = entry.path
            cached = None
            document = snapshot.get(name)
            if document is not None:
                with contextlib.suppress(OSError):
                    if entry.stat().st_mtime_ns < taken - TICK_NS:  # unchanged since
                        cached = _parse_meta(document, self.slice_bytes)
            if cached is None:
                cached = _read_meta(path, self.slice_bytes)
            if cached is None or cached.stem != name:
                _unlink(path)
                for _, _, slice_path, _ in found.pop(name, []):
                    _unlink(slice_path)
                continue
            # Indexed first, so that an eviction while its slices are admitted (a disk tier
            # made smaller since) can find and delete them too.
            self.objects[cached.key] = cached
            for index, crc, slice_path, size in sorted(found.pop(name, [])):
                _, length = cached.slice_range(index)
                if length == 0 or size != length:  # truncated, or not of this object
                    _unlink(slice_path)
                    continue
                cached.slices[index] = Slice(slice_path, length, crc)
                for evicted_key, evicted_index in self.disk.admit((cached.key, index), length):
                    self.evictions["disk"] += 1
                    self._forget_slice(evicted_key, evicted_index)
            if not cached.slices and self.objects.get(cached.key) is cached:
                self.objects.pop(cached.key)  # metadata alone: not worth an entry
                _unlink(path)
        for leftovers in found.values():  # slices whose metadata is gone
            for _, _, slice_path, _ in leftovers:
                _unlink(slice_path)
        return len(self.objects)

    def save_snapshot(self) -> int:
        """Write the disk tier's index to one file (at shutdown), so that the next start-up
        reads it instead of one metadata file per object. Returns the entries written."""
        if self.directory is None or not self.disk_usable:
            return 0
        taken = time.time_ns()
        entries = {c.stem: _meta_document(c) for c in self.objects.values() if c.slices}
        document = {"taken_ns": taken, "entries": entries}
        temporary = self.directory / "tmp" / f"{SNAPSHOT}.{os.getpid()}.tmp"
        try:
            temporary.write_text(json.dumps(document))
            os.rename(temporary, self.directory / SNAPSHOT)
        except OSError as exc:
            self.disk_failed(exc)
            _unlink(temporary)
            return 0
        return len(entries)

    # -- reading a slice back ------------------------------------------------------------

    def check(self, cached: Cached, index: int) -> Slice | None:
        """The slice if it is intact (see `open_slice`), or None (damaged ones are dropped)."""
        handle = self.open_slice(cached, index)
        if handle is None:
            return None
        handle.close()
        return cached.slices.get(index)

    def open_slice(self, cached: Cached, index: int) -> BinaryIO | None:
        """The slice's file, open at its start, if it is intact: its size and `fingerprint` are
        checked at every use (one fstat), its CRC-32 when the fingerprint is not the one this
        process last checked or wrote (first use after a restart, or the file was written,
        truncated or replaced since: a byte flipped under a running gateway is a miss, not
        wrong bytes), so that a hit need not read the bytes it sends with sendfile. Damaged,
        or gone (deleted from outside), it is dropped: None, a miss. Blocking: requests use
        `open_slice_checked`, which reads the bytes for the CRC in a thread."""
        opened = self._open(cached, index)
        if opened is None:
            return None
        handle, piece, now = opened
        if piece.checked == now:
            return handle
        try:
            intact = _crc_intact(handle, piece.length, piece.crc)
        except OSError:
            intact = False
        return self._checked(cached, index, handle, piece, now, intact)

    async def open_slice_checked(self, cached: Cached, index: int) -> BinaryIO | None:
        """`open_slice` for the event loop: a CRC check (a whole slice read, milliseconds) runs
        in a thread, so that the first hits after a restart do not stall every other request.
        Two requests may check one slice at once; both come to the same answer."""
        opened = self._open(cached, index)
        if opened is None:
            return None
        handle, piece, now = opened
        if piece.checked == now:  # the usual hit: one fstat, no read
            return handle
        loop = asyncio.get_running_loop()
        checking = loop.run_in_executor(None, _crc_intact, handle, piece.length, piece.crc)
        try:
            intact = await asyncio.shield(checking)
        except OSError:
            intact = False
        except BaseException:  # cancelled: the thread still reads the file, closed after it
            checking.add_done_callback(functools.partial(_close_after, handle))
            raise
        return self._checked(cached, index, handle, piece, now, intact)

    def _open(self, cached: Cached, index: int) -> tuple[BinaryIO, Slice, Fingerprint] | None:
        """The slice's file and its fingerprint, if it exists at its recorded size; otherwise
        it is dropped (None)."""
        piece = cached.slices.get(index)
        if piece is None:
            return None
        try:
            handle = open(piece.path, "rb")  # noqa: SIM115 (returned open)
        except OSError:
            self.bad_slice(cached, index)
            return None
        try:
            status = os.fstat(handle.fileno())
            if status.st_size == piece.length:
                return handle, piece, fingerprint(status)
        except OSError:
            pass
        handle.close()
        self.bad_slice(cached, index)
        return None

    def _checked(
        self,
        cached: Cached,
        index: int,
        handle: BinaryIO,
        piece: Slice,
        now: Fingerprint,
        intact: bool,
    ) -> BinaryIO | None:
        """After a CRC check: the handle at the slice's start, or None (closed, and the slice
        dropped unless it was replaced or dropped meanwhile)."""
        if intact:
            try:
                handle.seek(0)
            except OSError:
                intact = False
        if intact:
            piece.checked = now
            return handle
        handle.close()
        piece.checked = None
        if cached.slices.get(index) is piece:
            self.bad_slice(cached, index)
        return None

    def stats(self) -> dict[str, tuple[int, int]]:
        """(units, bytes) per tier."""
        return {
            "memory": (len(self.memory), self.memory.used),
            "disk": (len(self.disk), self.disk.used),
        }


def _crc_intact(handle: BinaryIO, length: int, crc: int) -> bool:
    """Whether the file holds exactly `length` bytes whose CRC-32 is `crc` (touches nothing
    but the handle: it may run in a thread)."""
    data = handle.read(length + 1)
    return len(data) == length and zlib.crc32(data) == crc


def _close_after(handle: BinaryIO, checking: asyncio.Future[bool]) -> None:
    if not checking.cancelled():
        checking.exception()  # retrieved: nobody waits for it any more
    handle.close()


def _subdirectories(directory: Path) -> Iterator[str]:
    for entry in os.scandir(directory):
        if entry.is_dir() and entry.name != "tmp" and len(entry.name) == 2:
            yield entry.path


_META_FIELDS: Final = tuple(f.name for f in fields(ObjectMeta))


def _meta_json(meta: ObjectMeta) -> dict[str, Any]:
    # Not dataclasses.asdict, which deep-copies every value (82 % of a snapshot's time).
    document = {name: getattr(meta, name) for name in _META_FIELDS}
    if meta.last_modified is not None:
        document["last_modified"] = meta.last_modified.isoformat()
    return document


def _meta_document(cached: Cached) -> dict[str, Any]:
    return {
        "key": cached.key,
        "meta": _meta_json(cached.meta),
        "validated": cached.validated,
        "fresh_until": cached.fresh_until,
        "slice_bytes": cached.slice_bytes,
    }


def _read_snapshot(path: Path) -> tuple[int, dict[str, Any]]:
    """(when it was taken, metadata documents by stem); (0, {}) when there is none usable."""
    try:
        document = json.loads(path.read_bytes())
        taken, entries = document["taken_ns"], document["entries"]
        if isinstance(taken, int) and isinstance(entries, dict):
            return taken, entries
    except (OSError, ValueError, KeyError, TypeError):
        pass
    return 0, {}


def _read_meta(path: str, slice_bytes: int) -> Cached | None:
    try:
        with open(path, encoding="utf-8") as handle:
            document = json.load(handle)
    except (OSError, ValueError):
        return None
    return _parse_meta(document, slice_bytes)


def _parse_meta(document: Any, slice_bytes: int) -> Cached | None:
    try:
        fields = dict(document["meta"])
        if fields.get("last_modified") is not None:
            fields["last_modified"] = datetime.fromisoformat(fields["last_modified"])
        meta = ObjectMeta(**fields)
        if document["slice_bytes"] != slice_bytes:
            return None  # another slice size: these slices do not fit the new grid
        return Cached(
            str(document["key"]),
            meta,
            float(document["validated"]),
            float(document["fresh_until"]),
            slice_bytes,
        )
    except (ValueError, KeyError, TypeError, AttributeError):
        return None


def _unlink(path: str | Path) -> None:
    with contextlib.suppress(OSError):
        os.unlink(path)


class _Reaper:
    """One daemon thread, started on first use, deleting the files it is given in order."""

    def __init__(self) -> None:
        self._queue: queue.Queue[str] = queue.Queue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def delete(self, path: str) -> None:
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="cache-reaper", daemon=True)
                self._thread.start()
        self._queue.put(path)

    def wait(self) -> None:
        """Until every file given so far is deleted (for tests: what is left when a process
        ends is deleted at the next start-up, with the rest of tmp/)."""
        self._queue.join()

    def _run(self) -> None:
        while True:
            path = self._queue.get()
            try:
                _unlink(path)
            finally:
                self._queue.task_done()


REAPER: Final = _Reaper()
