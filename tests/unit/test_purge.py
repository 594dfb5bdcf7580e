"""Purges without a server: what a purge request may name, what it drops from a real cache, how
a follower of the fleet's stream tells that it missed nothing, and purges racing storage."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.cache import Cache, Limits
from gateway.cache.purges import (
    Purge,
    PurgeError,
    PurgeResult,
    Purges,
    Target,
    _gap,
    _Position,
    checked,
    drop,
    expire_all,
    from_body,
)
from gateway.cache.tiers import Tiers
from gateway.http.ranges import RangeSpec
from gateway.storage import ObjectBody, ObjectMeta, UploadRegistry, UploadSink
from gateway.storage.local import LocalStore

MIB = 1024 * 1024
SLICE = 64 * 1024


def make_cache(
    directory: Path | None = None, *, memory_object_bytes: int = MIB, slice_bytes: int = MIB
) -> Cache:
    tiers = Tiers(
        directory,
        disk_bytes=64 * MIB,
        memory_bytes=16 * MIB,
        memory_object_bytes=memory_object_bytes,
        slice_bytes=slice_bytes,
    )
    tiers.load()
    limits = Limits(
        disk_bytes=64 * MIB,
        memory_bytes=16 * MIB,
        memory_object_bytes=memory_object_bytes,
        slice_bytes=slice_bytes,
        ttl=3600.0,
        stale_if_error=0.0,
    )
    return Cache(tiers, limits)


def hold(cache: Cache, *keys: str) -> None:
    """Keep each key in the memory tier, as a fill would."""
    for key in keys:
        body = key.encode()
        meta = ObjectMeta(len(body), f'"{key}"', None, "text/plain")
        cached = cache.remember(key, meta, time.time())
        assert cached is not None
        cache.tiers.keep_in_memory(cached, body)


def held(cache: Cache) -> set[str]:
    return set(cache.tiers.objects)


# --- what a purge may name -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ({"key": "/doc.txt"}, Purge(Target.KEY, "/doc.txt")),
        ({"key": "/vidéos/été 1.mp4"}, Purge(Target.KEY, "/vidéos/été 1.mp4")),
        ({"prefix": "/videos/ep1/"}, Purge(Target.PREFIX, "/videos/ep1")),
        ({"prefix": "/videos/ep1"}, Purge(Target.PREFIX, "/videos/ep1")),
        ({"prefix": "/"}, Purge(Target.PREFIX, "/")),
    ],
    ids=["key", "unicode-key", "prefix-with-slash", "prefix-without-slash", "everything"],
)
def test_a_purge_names_request_paths(body: dict[str, str], expected: Purge) -> None:
    assert from_body(body) == expected


@pytest.mark.parametrize(
    ("body", "says"),
    [
        ([], "exactly one of"),
        ("/doc.txt", "exactly one of"),
        ({}, "exactly one of"),
        ({"key": "/a", "prefix": "/b"}, "exactly one of"),
        ({"url": "/a"}, "exactly one of"),
        ({"key": 5}, "key: must be a string"),
        ({"key": "doc.txt"}, "key: the path must name an object"),
        ({"key": "/"}, "key: the path must name an object"),
        ({"key": "/videos/"}, "empty, '.' or '..' segment"),
        ({"key": "/a/../b"}, "empty, '.' or '..' segment"),
        ({"prefix": "/a//"}, "empty, '.' or '..' segment"),
        ({"key": "/a%20b"}, "decoded path ('/a b')"),
        ({"key": "/a\\b"}, "backslash or a control character"),
        ({"key": "/a\x00b"}, "backslash or a control character"),
        ({"key": "/\ud800"}, "not valid Unicode"),
        ({"key": "/" + "a" * 1100}, "longer than 1024 bytes"),
    ],
    ids=[
        "list",
        "string",
        "empty",
        "both",
        "unknown",
        "not-a-string",
        "relative",
        "root-key",
        "trailing-slash-key",
        "dot-dot",
        "empty-segment-prefix",
        "percent-encoded",
        "backslash",
        "nul",
        "surrogate",
        "too-long",
    ],
)
def test_a_malformed_purge_is_refused_saying_why(body: object, says: str) -> None:
    with pytest.raises(PurgeError) as refused:
        from_body(body)
    assert says in str(refused.value)


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(), inner, max_size=3),
    max_leaves=8,
)


@given(st.one_of(JSON, st.dictionaries(st.sampled_from(["key", "prefix"]), JSON, max_size=2)))
def test_any_request_body_is_a_purge_or_a_purge_error(body: object) -> None:
    try:
        purge = from_body(body)
    except PurgeError:
        return
    assert checked(purge.target, purge.path) == purge


@given(st.sampled_from(Target), st.text(min_size=1).map(lambda text: "/" + text))
def test_a_valid_purge_goes_through_the_stream_unchanged(target: Target, path: str) -> None:
    try:
        purge = checked(target, path)
    except PurgeError:
        return
    assert Purge.from_json(purge.to_json()) == purge
    assert json.loads(purge.to_json()) == purge.describe()


# --- what it drops ---------------------------------------------------------------------------


def test_a_key_purge_drops_that_object_only() -> None:
    cache = make_cache()
    hold(cache, "doc.txt", "doc.txt.bak", "videos/doc.txt")

    assert drop(cache, Purge(Target.KEY, "/doc.txt"), "") == 1

    assert held(cache) == {"doc.txt.bak", "videos/doc.txt"}


@pytest.mark.parametrize(
    ("prefix", "left"),
    [
        ("/videos/ep1", {"videos/ep10/a.ts", "videos/ep1.ts", "doc.txt"}),
        ("/videos", {"doc.txt"}),
        ("/", set()),
    ],
    ids=["segment-boundary", "parent", "everything"],
)
def test_a_prefix_purge_drops_what_is_at_or_under_it(prefix: str, left: set[str]) -> None:
    cache = make_cache()
    everything = {"videos/ep1", "videos/ep1/a.ts", "videos/ep1/b/c.ts", "videos/ep10/a.ts"}
    hold(cache, *everything, "videos/ep1.ts", "doc.txt")

    dropped = drop(cache, checked(Target.PREFIX, prefix), "")

    assert held(cache) == left
    assert dropped == len(everything) + 2 - len(left)


@pytest.mark.parametrize(
    ("purge", "left"),
    [
        (Purge(Target.KEY, "/doc.txt"), {"other/doc.txt"}),
        (Purge(Target.PREFIX, "/"), {"other/doc.txt"}),
    ],
    ids=["key", "everything"],
)
def test_paths_are_mapped_with_the_origin_prefix(purge: Purge, left: set[str]) -> None:
    cache = make_cache()
    hold(cache, "media/doc.txt", "other/doc.txt")

    assert drop(cache, purge, "media/") == 1

    assert held(cache) == left


def test_a_path_too_long_for_a_key_under_this_prefix_drops_nothing() -> None:
    cache = make_cache()
    hold(cache, "doc.txt")

    assert drop(cache, Purge(Target.KEY, "/" + "a" * 1020), "media/") == 0

    assert held(cache) == {"doc.txt"}


def test_expiring_everything_keeps_entries_but_makes_them_stale() -> None:
    cache = make_cache()
    hold(cache, "a", "b")
    now = time.time()

    assert expire_all(cache, now) == 2

    assert held(cache) == {"a", "b"}
    assert not any(cache.fresh(cached, now) for cached in cache.tiers.objects.values())


async def test_without_a_fleet_a_purge_is_dropped_here_and_not_published() -> None:
    cache = make_cache()
    hold(cache, "doc.txt")
    purges = Purges(cache, "", None)

    assert await purges.purge(Purge(Target.KEY, "/doc.txt")) == PurgeResult(1, published=False)
    assert purges.dropped == 1


async def test_a_process_without_a_cache_drops_nothing_and_says_so() -> None:
    purges = Purges(None, "", None)

    assert await purges.purge(Purge(Target.PREFIX, "/")) == PurgeResult(None, published=False)


# --- knowing that no purge was missed ----------------------------------------------------------

RUN = "run-1"


def stream(added: int, length: int, first: bytes | None) -> dict[str, Any]:
    return {
        "length": length,
        "entries-added": added,
        "first-entry": None if first is None else (first, {}),
        "last-generated-id": b"9-0",
    }


@pytest.mark.parametrize(
    ("seen", "now", "info", "gap"),
    [
        ((RUN, b"5-0", 5), (RUN, b"5-0", 5), stream(5, 5, b"1-0"), None),
        ((RUN, b"5-0", 5), (RUN, b"9-0", 9), stream(9, 9, b"1-0"), None),
        ((RUN, b"5-0", 5), (RUN, b"9-0", 9), stream(9, 4, b"5-0"), None),
        ((RUN, b"5-0", 5), (RUN, b"9-0", 9), stream(9, 4, b"6-0"), None),
        ((RUN, b"5-0", 5), (RUN, b"9-0", 9), stream(9, 3, b"7-0"), "trimmed"),
        ((RUN, b"5-0", 5), (RUN, b"9-0", 9), stream(9, 0, None), "trimmed"),
        ((RUN, b"5-0", 5), ("run-2", b"9-0", 9), stream(9, 9, b"1-0"), "restarted"),
        ((RUN, b"5-0", 5), (RUN, b"0-0", 0), None, "deleted"),
        ((RUN, b"0-0", 0), (RUN, b"0-0", 0), None, None),
        ((RUN, b"5-0", 5), (RUN, b"9-0", None), stream(9, 9, b"1-0"), "Redis 7"),
    ],
    ids=[
        "nothing-new",
        "new-events-all-kept",
        "trimmed-up-to-the-position",
        "trimmed-to-the-next-event",
        "trimmed-past-the-position",
        "emptied",
        "redis-restarted",
        "stream-deleted",
        "never-published",
        "redis-6",
    ],
)
def test_a_follower_resumes_only_where_it_can_show_nothing_was_missed(
    seen: tuple[str, bytes, int],
    now: tuple[str, bytes, int | None],
    info: dict[str, Any] | None,
    gap: str | None,
) -> None:
    found = _gap(_Position(*seen), _Position(*now), info)

    if gap is None:
        assert found is None
    else:
        assert found is not None
        assert gap in found


# --- purges racing storage ---------------------------------------------------------------------


class GatedStore:
    """A local store whose GETs wait for the test's signal: a purge lands while storage is
    answering a fill."""

    def __init__(self, inner: LocalStore) -> None:
        self.inner = inner
        self.asked = asyncio.Event()
        self.gate = asyncio.Event()

    async def get(self, key: str, spec: RangeSpec | None) -> ObjectBody:
        self.asked.set()
        await self.gate.wait()
        return await self.inner.get(key, spec)

    async def head(self, key: str) -> ObjectMeta:
        return await self.inner.head(key)

    async def revalidate(self, key: str, etag: str) -> ObjectMeta | None:
        return await self.inner.revalidate(key, etag)

    async def begin_upload(
        self,
        key: str,
        *,
        content_type: str,
        no_overwrite: bool,
        registry: UploadRegistry | None = None,
    ) -> UploadSink:
        return await self.inner.begin_upload(
            key, content_type=content_type, no_overwrite=no_overwrite, registry=registry
        )

    async def abort_abandoned(self, location: str, upload_id: str) -> bool:
        return await self.inner.abort_abandoned(location, upload_id)

    async def start(self) -> None: ...

    async def check(self) -> None: ...

    async def close(self) -> None: ...


async def test_a_fill_under_way_when_its_key_is_purged_serves_its_bytes_but_keeps_none(
    tmp_path: Path,
) -> None:
    (tmp_path / "doc.txt").write_bytes(b"the version being purged")
    store = GatedStore(LocalStore(tmp_path, chunk_size=65536))
    cache = make_cache()
    fill = cache.fill(store, "doc.txt", 0, None)
    await store.asked.wait()

    cache.purge("doc.txt")
    store.gate.set()

    meta = await fill.head()
    assert b"".join([chunk async for chunk in fill.read(0, meta.size)]) == (
        b"the version being purged"
    )
    assert cache.entry("doc.txt") is None
    assert cache.fill(store, "doc.txt", 0, None) is not fill  # the next request starts afresh


async def test_a_disk_object_purged_mid_response_is_sent_whole(tmp_path: Path) -> None:
    content = bytes(range(256)) * (3 * SLICE // 256) + b"tail"  # four slices
    (tmp_path / "objects").mkdir()
    (tmp_path / "objects" / "film.bin").write_bytes(content)
    store = LocalStore(tmp_path / "objects", chunk_size=SLICE)
    cache = make_cache(tmp_path / "cache", memory_object_bytes=1024, slice_bytes=SLICE)
    await cache.fill(store, "film.bin", 0, None).head()
    first = cache.entry("film.bin")
    assert first is not None
    body = await cache.open(store, first, None)
    assert b"".join([chunk async for chunk in body.chunks()]) == content
    assert first.complete()  # every slice on disk
    body = await cache.open(store, first, None)
    chunks = body.chunks()
    sent = [await anext(chunks)]  # the first slice, from its file

    cache.purge("film.bin")

    sent.extend([chunk async for chunk in chunks])
    assert b"".join(sent) == content
