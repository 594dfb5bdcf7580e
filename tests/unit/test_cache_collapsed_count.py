"""The cache's count of collapsed requests (gateway_cache_collapsed): a request that joins a
storage fetch another request started, never one that asks again for a fetch of its own."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest

from gateway.cache import Cache, Limits
from gateway.cache.tiers import Tiers
from gateway.storage.local import LocalStore

SLICE = 64 * 1024


def cache_in(directory: Path) -> Cache:
    tiers = Tiers(
        directory,
        disk_bytes=2**30,
        memory_bytes=2**20,
        memory_object_bytes=16 * 1024,
        slice_bytes=SLICE,
    )
    tiers.load()
    limits = Limits(2**30, 2**20, 16 * 1024, SLICE, ttl=60, stale_if_error=0)
    return Cache(tiers, limits)


async def read(cache: Cache, store: LocalStore, key: str) -> bytes:
    """What the pipeline does for a GET of the whole object (handler._read_cached)."""
    cached = cache.entry(key)
    if cached is None:
        await cache.fill(store, key, 0, None).head()
        cached = cache.entry(key)
        assert cached is not None
    body = await cache.open(store, cached, None)
    return b"".join([chunk async for chunk in body.chunks()])


@pytest.fixture
def objects(tmp_path: Path) -> dict[str, bytes]:
    (tmp_path / "bucket").mkdir()
    found = {}
    for name, size in [("small.bin", 4096), ("sliced.bin", 3 * SLICE + 100)]:
        found[name] = os.urandom(size)
        (tmp_path / "bucket" / name).write_bytes(found[name])
    return found


@pytest.mark.parametrize("key", ["small.bin", "sliced.bin"])
async def test_a_lone_request_for_a_cold_object_collapses_nothing(
    tmp_path: Path, objects: dict[str, bytes], key: str
) -> None:
    cache = cache_in(tmp_path / "cache")
    store = LocalStore(tmp_path / "bucket", chunk_size=16 * 1024)
    assert await asyncio.create_task(read(cache, store, key)) == objects[key]
    await cache.close()
    assert cache.collapsed == 0


@pytest.mark.parametrize("clients", [2, 10])
async def test_requests_joining_a_fetch_under_way_are_counted_once_per_slice_at_most(
    tmp_path: Path, objects: dict[str, bytes], clients: int
) -> None:
    cache = cache_in(tmp_path / "cache")
    store = LocalStore(tmp_path / "bucket", chunk_size=16 * 1024)
    answers = await asyncio.gather(*(read(cache, store, "sliced.bin") for _ in range(clients)))
    await cache.close()
    assert answers == [objects["sliced.bin"]] * clients
    slices = 4
    assert clients - 1 <= cache.collapsed <= (clients - 1) * slices
