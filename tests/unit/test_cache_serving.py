"""What the edge cache does to answers, fast: a gateway with the cache on in front of the local
store (a `file://` directory), over loopback. A small object lives in the memory tier, a film of
four slices on disk.

Storage is spied on (every call the pipeline makes is recorded) or, for outages, made to fail;
everything else is real. The SeaweedFS suites (tests/integration/) cover real S3.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from gateway.cache import Cache, Fill, Limits
from gateway.cache.tiers import Tiers
from gateway.http.ranges import RangeSpec
from gateway.observability import access_log
from gateway.revocation import Kind, Revocation
from gateway.storage import ObjectBody, ObjectMeta, OriginError, OriginTimeout, StorageError
from tests.integration.harness import (
    Keys,
    RunningGateway,
    gateway_settings,
    make_keys,
    running_gateway,
)
from tests.polling import eventually

SLICE = 64 * 1024
SMALL = b"a small hot object\n" * 20  # memory tier
FILM = bytes(range(256)) * (SLICE * 4 // 256)  # four slices, disk tier
OBJECTS = {"small.txt": SMALL, "film.bin": FILM}


@dataclass
class Edge:
    gw: RunningGateway
    keys: Keys
    root: Path
    calls: list[str]  # storage calls by name, in order
    lines: list[dict[str, Any]]  # access log lines

    async def get(
        self, path: str, headers: dict[str, str] | None = None, method: str = "GET", **options: Any
    ) -> tuple[int, Mapping[str, str], bytes]:
        response, body = await self.gw.request(
            method, self.keys.sign(path, **options), headers=headers
        )
        return response.status, response.headers, body

    @property
    def cache(self) -> Cache:
        assert self.gw.services.cache is not None
        return self.gw.services.cache

    def states(self) -> list[str | None]:
        return [line.get("cache") for line in self.lines]


@pytest.fixture
def access_lines(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """Every access line the gateway writes, as JSON."""
    lines: list[dict[str, Any]] = []
    monkeypatch.setattr(
        access_log.AccessLines,
        "write",
        lambda self, record: lines.append(json.loads(record.line())),
    )
    return lines


EdgeFactory = Callable[..., Awaitable[Edge]]


@pytest.fixture
async def edge(
    tmp_path: Path, access_lines: list[dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[EdgeFactory]:
    """Start a gateway with the cache on and these cache_* settings."""
    root = tmp_path / "objects"
    root.mkdir()
    for key, content in OBJECTS.items():
        (root / key).write_bytes(content)
    (tmp_path / "keys").mkdir()
    keys = make_keys(tmp_path / "keys")
    running: list[Any] = []

    async def start(**cache: str) -> Edge:
        settings = gateway_settings(
            f"file://{root}",
            keys.gateway_file,
            keyring_watch_interval="0",
            access_log="true",  # the lines are read back (`access_lines`)
            cache="true",
            cache_dir=str(tmp_path / "cache"),
            cache_slice_bytes=str(SLICE),
            **{f"cache_{name}": value for name, value in cache.items()},
        )
        context = running_gateway(settings)
        gw = await context.__aenter__()
        running.append(context)
        calls = spy_on(gw, monkeypatch)
        return Edge(gw, keys, root, calls, access_lines)

    yield start
    for context in reversed(running):
        await context.__aexit__(None, None, None)


def spy_on(gw: RunningGateway, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Record the pipeline's calls to storage (not the store's calls to itself)."""
    store = gw.services.store
    calls: list[str] = []
    real_head, real_get, real_revalidate = store.head, store.get, store.revalidate
    inside = [False]

    async def head(key: str) -> ObjectMeta:
        if not inside[0]:
            calls.append("head")
        return await real_head(key)

    async def get(key: str, spec: RangeSpec | None) -> ObjectBody:
        calls.append("get")
        return await real_get(key, spec)

    async def revalidate(key: str, etag: str) -> ObjectMeta | None:
        calls.append("revalidate")
        inside[0] = True
        try:
            return await real_revalidate(key, etag)
        finally:
            inside[0] = False

    monkeypatch.setattr(store, "head", head)
    monkeypatch.setattr(store, "get", get)
    monkeypatch.setattr(store, "revalidate", revalidate)
    return calls


def replace(path: Path, data: bytes) -> None:
    """A new version of an object, as stores do: never the old file rewritten in place."""
    temporary = path.with_name(path.name + ".new")
    temporary.write_bytes(data)
    temporary.replace(path)


def counted(edge: Edge, state: str) -> float:
    return edge.gw.metric("gateway_cache_requests_total", state=state)


PATHS = [pytest.param("/small.txt", id="memory tier"), pytest.param("/film.bin", id="disk tier")]


@pytest.mark.parametrize("path", PATHS)
async def test_the_second_request_is_a_hit_that_asks_storage_nothing(
    edge: EdgeFactory, path: str
) -> None:
    e = await edge()
    content = OBJECTS[path[1:]]
    assert (await e.get(path))[::2] == (200, content)
    e.calls.clear()

    answers = [
        await e.get(path),
        await e.get(path, {"Range": "bytes=10-19"}),
        await e.get(path, method="HEAD"),
    ]
    _, headers, _ = answers[0]
    answers.append(await e.get(path, {"If-None-Match": headers["ETag"]}))

    assert [(status, body) for status, _, body in answers] == [
        (200, content),
        (206, content[10:20]),
        (200, b""),
        (304, b""),
    ]
    assert e.calls == []
    assert e.states() == ["miss", "hit", "hit", "hit", "hit"]
    assert (counted(e, "miss"), counted(e, "hit")) == (1, 4)


@pytest.mark.parametrize("path", PATHS)
async def test_a_cached_answer_carries_age_since_storage_last_vouched_for_the_object(
    edge: EdgeFactory, path: str
) -> None:
    e = await edge()
    _, first, _ = await e.get(path)
    assert first["Age"] == "0"
    cached = e.cache.entry(path[1:])
    assert cached is not None
    cached.validated -= 100  # as if stored 100 s ago (and still fresh)
    cached.fresh_until += 100

    _, later, _ = await e.get(path)

    assert int(later["Age"]) >= 100


@pytest.mark.parametrize("path", PATHS)
async def test_a_stale_entry_is_revalidated_and_storage_vouching_for_it_moves_no_bytes(
    edge: EdgeFactory, path: str
) -> None:
    e = await edge(ttl="0")  # every entry stale at once
    await e.get(path)
    cached = e.cache.entry(path[1:])
    assert cached is not None
    cached.validated -= 100
    e.calls.clear()

    status, headers, body = await e.get(path)

    assert (status, body) == (200, OBJECTS[path[1:]])
    assert e.calls == ["revalidate"]
    assert e.states()[-1] == "revalidated"
    assert headers["Age"] == "0"


async def test_a_stale_entry_of_an_object_that_changed_is_fetched_again(edge: EdgeFactory) -> None:
    e = await edge(ttl="0")
    await e.get("/small.txt")
    replace(e.root / "small.txt", b"the new version, longer than before\n" * 3)

    status, _, body = await e.get("/small.txt")

    assert (status, body) == (200, b"the new version, longer than before\n" * 3)
    assert e.states() == ["miss", "miss"]


FAILURES = [
    pytest.param(OriginError("storage is down"), id="origin_error"),
    pytest.param(OriginTimeout("storage is slow"), id="origin_timeout"),
]


@pytest.mark.parametrize("failure", FAILURES)
@pytest.mark.parametrize("path", PATHS)
async def test_with_stale_if_error_a_stale_copy_is_served_while_storage_fails(
    edge: EdgeFactory, path: str, failure: Exception, monkeypatch: pytest.MonkeyPatch
) -> None:
    e = await edge(ttl="0", stale_if_error="600")
    await e.get(path)
    fail_storage(e, monkeypatch, failure)

    status, headers, body = await e.get(path)

    assert (status, body) == (200, OBJECTS[path[1:]])
    assert e.states()[-1] == "stale"
    assert "Age" in headers


@pytest.mark.parametrize(
    ("failure", "status"),
    [(OriginError("storage is down"), 502), (OriginTimeout("storage is slow"), 504)],
    ids=["origin_error", "origin_timeout"],
)
@pytest.mark.parametrize(
    ("stale_if_error", "stale_for"),
    [("0", 0.0), ("600", 601.0)],
    ids=["stale-if-error off", "stale for longer than allowed"],
)
async def test_otherwise_a_stale_entry_and_failing_storage_is_answered_as_without_the_cache(
    edge: EdgeFactory,
    stale_if_error: str,
    stale_for: float,
    failure: StorageError,
    status: int,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    e = await edge(ttl="0", stale_if_error=stale_if_error)
    await e.get("/small.txt")
    cached = e.cache.entry("small.txt")
    assert cached is not None
    cached.fresh_until -= stale_for
    fail_storage(e, monkeypatch, failure)

    answer, _, body = await e.get("/small.txt")

    assert (answer, json.loads(body)) == (status, {"error": failure.kind})


async def test_a_stale_copy_serves_only_what_the_cache_holds(
    edge: EdgeFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    e = await edge(ttl="0", stale_if_error="600")
    await e.get("/film.bin", {"Range": "bytes=0-9"})
    cached = e.cache.entry("film.bin")
    assert cached is not None
    await eventually(lambda: 0 in cached.slices)  # slice 0 held, the others never fetched
    fail_storage(e, monkeypatch, OriginError("storage is down"))

    held = await e.get("/film.bin", {"Range": "bytes=0-9"})
    never_held = await e.get("/film.bin", {"Range": f"bytes={2 * SLICE}-{2 * SLICE + 9}"})

    assert held[::2] == (206, FILM[:10])
    assert never_held[0] == 502


async def test_a_new_version_found_before_the_head_is_sent_is_served_whole(
    edge: EdgeFactory,
) -> None:
    """The entry (fresh) names the old version; the slice asked for is not held, and storage
    answers it with another ETag: the request starts over on the new version."""
    e = await edge()
    await e.get("/film.bin", {"Range": "bytes=0-9"})
    cached = e.cache.entry("film.bin")
    assert cached is not None
    await eventually(lambda: 0 in cached.slices)
    new = bytes(reversed(FILM))
    replace(e.root / "film.bin", new)

    status, _, body = await e.get("/film.bin", {"Range": f"bytes={2 * SLICE}-{2 * SLICE + 9}"})

    assert (status, body) == (206, new[2 * SLICE : 2 * SLICE + 10])
    assert (await e.get("/film.bin", {"Range": "bytes=0-9"}))[::2] == (206, new[:10])


def fail_storage(e: Edge, monkeypatch: pytest.MonkeyPatch, failure: Exception) -> None:
    async def failing(*_: object) -> Any:
        raise failure

    for name in ("head", "get", "revalidate"):
        monkeypatch.setattr(e.gw.services.store, name, failing)


async def test_signed_overrides_are_applied_after_the_cache_and_never_stored(
    edge: EdgeFactory,
) -> None:
    e = await edge()
    overridden: dict[str, Any] = {
        "response_content_type": "application/x-download",
        "response_content_disposition": 'attachment; filename="notes.txt"',
    }
    _, first, _ = await e.get("/small.txt", **overridden)
    _, plain, _ = await e.get("/small.txt")
    _, again, _ = await e.get("/small.txt", **overridden)

    assert e.states() == ["miss", "hit", "hit"]
    assert first["Content-Type"] == again["Content-Type"] == "application/x-download"
    assert plain["Content-Type"].startswith("text/plain")
    assert "notes.txt" not in plain.get("Content-Disposition", "")


async def test_a_revoked_link_never_gets_the_cached_object(edge: EdgeFactory) -> None:
    e = await edge()
    assert (await e.get("/small.txt", sub="someone"))[0] == 200
    now = time.time()
    e.gw.services.revocations.apply(Revocation(Kind.SUB, "someone", now + 3600, now))

    status, _, body = await e.get("/small.txt", sub="someone")

    assert (status, json.loads(body)) == (403, {"error": "revoked"})
    assert e.states() == ["miss", None]


async def test_a_missing_object_is_not_cached(edge: EdgeFactory) -> None:
    e = await edge()
    assert (await e.get("/later.txt"))[0] == 404
    (e.root / "later.txt").write_bytes(b"here now\n")

    assert (await e.get("/later.txt"))[::2] == (200, b"here now\n")


async def test_an_object_larger_than_the_disk_tier_streams_through_uncached(
    edge: EdgeFactory,
) -> None:
    e = await edge(disk_bytes=str(len(FILM) - 1))
    answers = [await e.get("/film.bin") for _ in range(2)]

    assert [(status, body) for status, _, body in answers] == [(200, FILM)] * 2
    assert all("Age" not in headers for _, headers, _ in answers)
    assert e.states() == ["bypass", "bypass"]


@pytest.mark.parametrize(
    ("headers", "asked", "expected"),
    [
        pytest.param({}, ["bytes=0-65535", f"bytes=65536-{len(FILM) - 1}"], FILM, id="whole"),
        pytest.param({"Range": "bytes=10-99"}, ["bytes=0-65535"], FILM[10:100], id="in-slice-0"),
        pytest.param(
            {"Range": "bytes=65530-65545"},
            ["bytes=0-65535", "bytes=65536-65545"],
            FILM[65530:65546],
            id="across-slices",
        ),
    ],
)
async def test_an_object_found_uncacheable_is_answered_from_the_slice_that_found_so(
    edge: EdgeFactory,
    monkeypatch: pytest.MonkeyPatch,
    headers: dict[str, str],
    asked: list[str],
    expected: bytes,
) -> None:
    """Its first slice is not fetched a second time: storage is asked only for the rest."""
    e = await edge(disk_bytes=str(len(FILM) - 1))
    store, ranges = e.gw.services.store, []
    spied = store.get

    async def get(key: str, spec: RangeSpec | None) -> ObjectBody:
        ranges.append(spec.header() if spec is not None else "")
        return await spied(key, spec)

    monkeypatch.setattr(store, "get", get)
    status, _, body = await e.get("/film.bin", headers)

    assert (status, body) == (206 if headers else 200, expected)
    assert ranges == asked
    assert e.states() == ["bypass"]


async def test_with_no_disk_tier_small_objects_are_still_cached_in_memory(
    edge: EdgeFactory,
) -> None:
    e = await edge(disk_bytes="0")
    await e.get("/small.txt")
    e.calls.clear()

    assert (await e.get("/small.txt"))[::2] == (200, SMALL)
    assert e.calls == []
    assert e.states() == ["miss", "hit"]


def limits(**overrides: float) -> Limits:
    values: dict[str, float] = {
        "disk_bytes": 10_000,
        "memory_bytes": 10_000,
        "memory_object_bytes": 100,
        "slice_bytes": 1000,
        "ttl": 60.0,
        "stale_if_error": 0.0,
    }
    values.update(overrides)
    return Limits(**values)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("cache_control", "size", "kept"),
    [
        (None, 50, True),
        ("no-store", 50, False),
        ("private, no-store", 5000, False),
        ("max-age=10", 5000, True),
        (None, 10_001, False),  # larger than the disk tier
    ],
)
def test_what_is_kept_is_decided_by_the_objects_cache_control_and_size(
    tmp_path: Path, cache_control: str | None, size: int, kept: bool
) -> None:
    cache = Cache(
        Tiers(
            tmp_path,
            disk_bytes=10_000,
            memory_bytes=10_000,
            memory_object_bytes=100,
            slice_bytes=1000,
        ),
        limits(),
    )
    cache.tiers.load()
    meta = ObjectMeta(size, '"v1"', None, "text/plain", cache_control=cache_control)

    assert (cache.remember("k", meta, time.time()) is not None) is kept
    assert (cache.entry("k") is not None) is kept


async def test_with_an_unusable_cache_directory_large_objects_bypass_and_small_ones_are_cached(
    edge: EdgeFactory, tmp_path: Path
) -> None:
    (tmp_path / "cache").write_text("a file where the cache directory should be")
    e = await edge()

    answers = [await e.get(path) for path in ("/film.bin", "/film.bin", "/small.txt", "/small.txt")]

    assert [body for _, _, body in answers] == [FILM, FILM, SMALL, SMALL]
    assert e.states() == ["bypass", "bypass", "miss", "hit"]


def gate_bodies(e: Edge, monkeypatch: pytest.MonkeyPatch) -> asyncio.Event:
    """Storage answers at once but sends no body byte until the event is set."""
    store, opened = e.gw.services.store, asyncio.Event()
    real_get = store.get

    async def get(key: str, spec: RangeSpec | None) -> ObjectBody:
        body = await real_get(key, spec)  # the spy's: still recorded in e.calls
        real_chunks = body.chunks

        async def chunks() -> AsyncIterator[bytes]:
            await opened.wait()
            async for chunk in real_chunks():
                yield chunk

        monkeypatch.setattr(body, "chunks", chunks)
        return body

    monkeypatch.setattr(store, "get", get)
    return opened


@pytest.mark.parametrize("clients", [1, 10])
async def test_concurrent_cold_requests_share_one_storage_fetch_per_slice_and_are_counted(
    edge: EdgeFactory, monkeypatch: pytest.MonkeyPatch, clients: int
) -> None:
    e = await edge()
    opened = gate_bodies(e, monkeypatch)
    requests = [asyncio.create_task(e.get("/film.bin")) for _ in range(clients)]

    def all_waiting_on_the_first_slice() -> bool:
        fill = e.cache.fills.get(("film.bin", 0))
        return fill is not None and fill.readers == clients

    await eventually(all_waiting_on_the_first_slice)
    opened.set()

    answers = await asyncio.gather(*requests)

    assert [(status, body) for status, _, body in answers] == [(200, FILM)] * clients
    assert e.calls == ["get"] * 4  # each slice once
    assert e.gw.metric("gateway_cache_collapsed_total") >= clients - 1
    assert e.gw.metric("gateway_cache_collapsed_total") <= (clients - 1) * 4


@pytest.mark.parametrize(
    ("first", "last", "slices"),
    [
        pytest.param(2 * SLICE + 10, 2 * SLICE + 19, 1, id="within one slice"),
        pytest.param(SLICE - 5, SLICE + 4, 2, id="across two slices"),
        pytest.param(3 * SLICE, None, 1, id="from the last slice to the end"),
    ],
)
async def test_a_range_of_a_cold_object_fetches_only_the_slices_it_touches(
    edge: EdgeFactory, first: int, last: int | None, slices: int
) -> None:
    e = await edge()
    spec = f"bytes={first}-{'' if last is None else last}"

    status, _, body = await e.get("/film.bin", {"Range": spec})

    assert (status, body) == (206, FILM[first : None if last is None else last + 1])
    assert e.calls == ["get"] * slices


async def test_a_new_version_found_mid_response_aborts_it_and_the_next_request_gets_the_new_one(
    edge: EdgeFactory,
) -> None:
    """A response is never stitched from two versions: slice 0 is held (old version), slice 1
    comes from storage with another ETag once the head is sent, so the connection is cut."""
    e = await edge()
    await e.get("/film.bin", {"Range": "bytes=0-9"})
    cached = e.cache.entry("film.bin")
    assert cached is not None
    await eventually(lambda: 0 in cached.slices)  # the fill goes on after the 10 bytes
    new = bytes(reversed(FILM))
    replace(e.root / "film.bin", new)  # same size, another ETag (its mtime)

    with pytest.raises(aiohttp.ClientPayloadError):
        await e.get("/film.bin")

    assert (await e.get("/film.bin"))[::2] == (200, new)


async def test_an_object_deleted_from_storage_is_404_at_revalidation_and_dropped(
    edge: EdgeFactory,
) -> None:
    e = await edge(ttl="0")
    await e.get("/small.txt")
    (e.root / "small.txt").unlink()

    assert (await e.get("/small.txt"))[0] == 404
    assert e.cache.entry("small.txt") is None


async def test_an_upload_through_the_gateway_drops_the_cached_object(edge: EdgeFactory) -> None:
    e = await edge()
    await e.get("/small.txt")
    target = e.keys.sign("/small.txt", method="PUT")
    async with e.gw.session.put(e.gw.url(target), data=b"uploaded\n") as response:
        assert response.status == 201

    assert (await e.get("/small.txt"))[::2] == (200, b"uploaded\n")
    assert e.states() == ["miss", None, "miss"]


async def test_a_full_disk_means_the_slices_are_not_stored_counted_and_the_answer_is_whole(
    edge: EdgeFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    e = await edge()
    full = tmp_path / "full.part"
    full.symlink_to("/dev/full")  # every write: ENOSPC; the cache deletes the link, not the device

    def temporary() -> tuple[int, str]:
        if not full.is_symlink():
            full.symlink_to("/dev/full")
        return os.open(full, os.O_WRONLY), str(full)

    monkeypatch.setattr(e.cache.tiers, "temporary", temporary)

    assert (await e.get("/film.bin"))[::2] == (200, FILM)
    # each of the 4 slices at least once (one fetched ahead and not kept may be fetched again)
    assert e.gw.metric("gateway_cache_bypasses_total") >= 4
    assert e.cache.tiers.stats()["disk"] == (0, 0)


async def test_a_slice_being_fetched_is_held_in_memory_for_readers_that_join_late() -> None:
    fill = Fill()
    fill.started(ObjectMeta(9, '"v1"', None, "text/plain"), None)
    for chunk in (b"abc", b"def", b"ghi"):
        fill.append(chunk)
    fill.finish()

    assert b"".join([chunk async for chunk in fill.read(0, 9)]) == b"abcdefghi"
    assert b"".join([chunk async for chunk in fill.read(4, 3)]) == b"efg"


async def test_a_cold_stream_fetches_the_next_slice_while_it_sends_one_and_no_further(
    edge: EdgeFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """So a cold stream holds at most two slices in memory: the one it sends, the next."""
    e = await edge()
    opened = gate_bodies(e, monkeypatch)
    request = asyncio.create_task(e.get("/film.bin"))

    await eventually(lambda: len(e.calls) == 2)
    assert set(e.cache.fills) == {("film.bin", 0), ("film.bin", 1)}
    opened.set()

    assert (await request)[::2] == (200, FILM)
