"""How long a gateway takes to reload its disk cache's index at start-up.

    python -m benchmarks.cache_startup [--entries N] [--bytes B] [--dir DIR]

Writes N small objects (default 100,000 of 1,000 bytes: one slice file and one metadata file
each) into a fresh cache directory through the tiers' own write path, then times what the
gateway runs at start-up (`Tiers.load`, in the `_cache` cleanup context of gateway/services.py)
on a fresh index, twice: the first load after writing, and a second one (both with the files in
the page cache: this does not drop caches, which needs root and disturbs everything else on the
machine); then once more after the index snapshot a gateway writes at shutdown
(`Tiers.save_snapshot`), which start-up reads instead of every object's metadata file. It
reports the objects found, the times, and the memory the index holds (tracemalloc). The
directory is deleted afterwards unless `--dir` names one.
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
import tracemalloc
import zlib
from datetime import UTC, datetime
from pathlib import Path

from gateway.cache.tiers import Tiers
from gateway.storage import ObjectMeta

SLICE = 4 * 1024 * 1024  # the default slice size


def tiers(directory: Path, entries: int, size: int) -> Tiers:
    return Tiers(
        directory,
        disk_bytes=max(entries * size * 2, 1),
        memory_bytes=0,
        memory_object_bytes=0,  # every object on disk
        slice_bytes=SLICE,
    )


def fill(directory: Path, entries: int, size: int) -> float:
    """Write `entries` objects as a gateway would after fetching them; returns the seconds."""
    writer = tiers(directory, entries, size)
    writer.load()  # creates tmp/
    body = os.urandom(size)
    now = time.time()
    started = time.perf_counter()
    for number in range(entries):
        meta = ObjectMeta(
            size=size,
            etag=f'"{number:032x}"',
            last_modified=datetime.now(UTC),
            content_type="application/octet-stream",
        )
        cached = writer.remember(f"bench/object-{number:07d}.bin", meta, now, 3600.0)
        temporary = writer.temporary()
        assert temporary is not None, "the cache directory cannot be written"
        fd, path = temporary
        os.write(fd, body)
        os.close(fd)
        if not writer.keep_slice(cached, 0, path, zlib.crc32(body)):
            raise RuntimeError("a slice was not kept")
    return time.perf_counter() - started


def load(directory: Path, entries: int, size: int) -> tuple[int, float]:
    """(objects found, seconds) for one start-up."""
    fresh = tiers(directory, entries, size)
    started = time.perf_counter()
    found = fresh.load()
    return found, time.perf_counter() - started


def snapshot(directory: Path, entries: int, size: int) -> tuple[int, float]:
    """(objects saved, seconds) for the snapshot a gateway writes at shutdown."""
    loaded = tiers(directory, entries, size)
    loaded.load()
    started = time.perf_counter()
    saved = loaded.save_snapshot()
    return saved, time.perf_counter() - started


def index_bytes(directory: Path, entries: int, size: int) -> int:
    """The memory a loaded index holds (traced apart: tracing slows the load several-fold)."""
    tracemalloc.start()
    try:
        fresh = tiers(directory, entries, size)
        fresh.load()
        held, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return held


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--entries", type=int, default=100_000)
    parser.add_argument("--bytes", type=int, default=1000, help="size of each object")
    parser.add_argument("--dir", type=Path, default=None, help="keep the cache here")
    options = parser.parse_args()
    directory = options.dir or Path(tempfile.mkdtemp(prefix="cache-startup-"))
    try:
        written = fill(directory, options.entries, options.bytes)
        print(f"wrote {options.entries:,} objects of {options.bytes} B in {written:.1f} s")
        for attempt in ("first", "second"):
            found, elapsed = load(directory, options.entries, options.bytes)
            print(
                f"{attempt} load: {found:,} objects in {elapsed:.2f} s "
                f"({elapsed / max(found, 1) * 1e6:.0f} µs each)"
            )
            if found != options.entries:
                raise SystemExit(f"expected {options.entries} objects, found {found}")
        saved, seconds = snapshot(directory, options.entries, options.bytes)
        print(f"snapshot at shutdown: {saved:,} objects in {seconds:.2f} s")
        # The metadata files of a real cache are older than its snapshot by more than a tick.
        aged = time.time_ns() - 10**9
        for meta in directory.glob("??/*.meta"):
            os.utime(meta, ns=(aged, aged))
        saved, _ = snapshot(directory, options.entries, options.bytes)
        found, elapsed = load(directory, options.entries, options.bytes)
        print(
            f"load with the snapshot: {found:,} objects in {elapsed:.2f} s "
            f"({elapsed / max(found, 1) * 1e6:.0f} µs each)"
        )
        if found != options.entries:
            raise SystemExit(f"expected {options.entries} objects, found {found}")
        held = index_bytes(directory, options.entries, options.bytes)
        print(f"index in memory: {held / 2**20:.0f} MiB ({held / options.entries:.0f} B each)")
    finally:
        if options.dir is None:
            shutil.rmtree(directory, ignore_errors=True)


if __name__ == "__main__":
    main()
