"""The edge cache in front of a real S3 server (SeaweedFS), counted at the storage side.

A forwarder between the gateway and SeaweedFS sees every request the gateway sends to storage
(`tests.forwarder`), so "served from the cache" is proved by what storage did not get, and an
outage is the forwarder cut or closed. Each test has its own folder in the bucket and its own
cache directory. Slices are the smallest the settings allow (64 KiB), so a few hundred KiB make
an object of several slices; objects up to one slice live in the memory tier, larger ones in
slice files on disk.
"""

from __future__ import annotations

import asyncio
import datetime
import hashlib
import os
import secrets
import shutil
import time
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import aiohttp
import pytest

from gateway.revocation import Kind
from gateway.revocation.entries import Revocation
from tests.forwarder import CountingForwarder, counting_forwarder
from tests.integration.harness import (
    Keys,
    RunningGateway,
    gateway_settings,
    make_keys,
    running_gateway,
    use_credentials,
)
from tests.polling import eventually
from tests.servers import S3Server, start_gateway

pytestmark = pytest.mark.integration

BUCKET = "private"
ROOT = "cache"  # the gateways' origin: s3://private/cache
SLICE = 64 * 1024
SMALL = os.urandom(5000)  # one slice or less: the memory tier
SLICED = os.urandom(4 * SLICE + 100)  # five slices, the last one short: the disk tier
BODIES = {"memory": SMALL, "disk": SLICED}


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> Keys:
    return make_keys(tmp_path_factory.mktemp("keys"))


@dataclass(frozen=True)
class Answer:
    """A response as a client saw it; `body` None: the connection broke before its end."""

    status: int
    headers: tuple[tuple[str, str], ...]  # all but Date and Age, which differ from run to run
    body: bytes | None


ABORTED = None  # the connection broke before a status line


@dataclass
class Edge:
    """One test's objects in the shared bucket, the storage forwarder, and gateways on top."""

    s3: S3Server
    storage: CountingForwarder
    keys: Keys
    folder: str  # this test's own folder under ROOT
    cache_dir: Path
    monkeypatch: pytest.MonkeyPatch

    def key(self, name: str) -> str:
        return f"{ROOT}/{self.folder}/{name}"

    def put(self, name: str, body: bytes, **extra: object) -> str:
        """Store (or replace) an object; returns its ETag."""
        client = self.s3.client()
        client.put_object(Bucket=BUCKET, Key=self.key(name), Body=body, **extra)
        etag: str = client.head_object(Bucket=BUCKET, Key=self.key(name))["ETag"]
        return etag

    def link(self, name: str, **options: object) -> str:
        return self.keys.sign(f"/{self.folder}/{name}", **options)

    def fetched(self, name: str) -> list[str]:
        """The ranges of the GETs storage received for the object, sorted (slices are fetched
        concurrently, so their order is not fixed); "" for a GET without a range."""
        path = f"/{BUCKET}/{self.key(name)}"
        return sorted(r.headers.get("range", "") for r in self.storage.requests_for(path))

    def asked(self, name: str) -> int:
        """Every request storage received about the object: GETs and HEADs."""
        path = f"/{BUCKET}/{self.key(name)}"
        return len([request for request in self.storage.requests if request.path == path])

    def gateway(self, **settings: str | None) -> AbstractAsyncContextManager[RunningGateway]:
        """A gateway with the cache on in `cache_dir` (64 KiB slices), unless `settings` say
        otherwise (None: the setting's default)."""
        chosen: dict[str, str | None] = {
            "cache": "true",
            "cache_dir": str(self.cache_dir),
            "cache_slice_bytes": str(SLICE),
            "s3_endpoint_url": self.storage.url,
            **settings,
        }
        use_credentials(self.monkeypatch, self.s3)
        return running_gateway(
            gateway_settings(
                f"s3://{BUCKET}/{ROOT}",
                self.keys.gateway_file,
                **{name: value for name, value in chosen.items() if value is not None},
            )
        )


@pytest.fixture
async def edge(
    s3_server: S3Server, keys: Keys, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[Edge]:
    port = urlsplit(s3_server.endpoint_url).port
    assert port is not None
    async with counting_forwarder(port) as storage:
        yield Edge(s3_server, storage, keys, secrets.token_hex(4), tmp_path / "cache", monkeypatch)


def slice_ranges(size: int, slice_bytes: int = SLICE) -> list[str]:
    """The Range of every slice of an object of `size` bytes, as the cache asks storage
    (sorted like `Edge.fetched`)."""
    starts = range(0, size, slice_bytes)
    return sorted(f"bytes={start}-{start + slice_bytes - 1}" for start in starts)


async def fetch(
    gw: RunningGateway, target: str, headers: dict[str, str] | None = None, method: str = "GET"
) -> Answer | None:
    try:
        async with gw.session.request(method, gw.url(target), headers=headers) as response:
            try:
                body: bytes | None = await response.read()
            except aiohttp.ClientPayloadError:
                body = None
            kept = tuple(
                (name, value)
                for name, value in response.headers.items()
                if name not in ("Date", "Age")
            )
            return Answer(response.status, kept, body)
    except aiohttp.ServerDisconnectedError:
        return ABORTED


def hits(gw: RunningGateway) -> float:
    return gw.metric("gateway_cache_requests_total", state="hit")


# --- a hit is served only to a link that verified ---------------------------------------------


def refused_link(edge: Edge, refusal: str, name: str) -> str:
    now = time.time()
    if refusal == "revoked":
        return edge.link(name, sub="mallory")
    if refusal == "tampered":  # another object's link, its path swapped for the cached one's
        return edge.link("other.bin").replace("/other.bin?", f"/{name}?")
    if refusal == "expired":
        return edge.link(name, expires_at=int(now) - 120, now=now - 600)
    assert refusal == "outside_prefix"
    query = edge.link("other/x.bin", prefix=f"/{edge.folder}/other/").partition("?")[2]
    return f"/{edge.folder}/{name}?{query}"


REFUSALS = {
    "revoked": "revoked",
    "tampered": "bad_signature",
    "expired": "expired",
    "outside_prefix": "outside_prefix",
}


def revoke_mallory(gw: RunningGateway) -> None:
    now = time.time()
    gw.services.revocations.apply(Revocation(Kind.SUB, "mallory", now + 3600, now + 60))


@pytest.mark.parametrize("method", ["GET", "HEAD"])
@pytest.mark.parametrize("tier", list(BODIES))
@pytest.mark.parametrize("refusal", list(REFUSALS))
async def test_a_refused_link_never_gets_a_cached_object(
    edge: Edge, refusal: str, tier: str, method: str
) -> None:
    body = BODIES[tier]
    edge.put("obj.bin", body)
    async with edge.gateway() as cached, edge.gateway(cache="false") as plain:
        for gw in (cached, plain):
            revoke_mallory(gw)
        for _ in range(2):  # a miss, then a hit: the object is in the cache
            warm = await fetch(cached, edge.link("obj.bin"))
            assert warm is not None
            assert (warm.status, warm.body) == (200, body)
        assert hits(cached) == 1
        asked = edge.asked("obj.bin")

        target = refused_link(edge, refusal, "obj.bin")
        with_cache = await fetch(cached, target, method=method)
        without_cache = await fetch(plain, target, method=method)

    assert with_cache is not None
    assert with_cache.status == 403
    assert with_cache == without_cache
    if method == "GET":
        assert with_cache.body == b'{"error":"%s"}\n' % REFUSALS[refusal].encode()
    assert hits(cached) == 1
    assert edge.asked("obj.bin") == asked


# --- the key is the object, never the token ----------------------------------------------------


@pytest.mark.parametrize("tier", list(BODIES))
async def test_links_differing_in_key_subject_and_expiry_share_one_entry(
    edge: Edge, tier: str
) -> None:
    body = BODIES[tier]
    edge.put("obj.bin", body)
    old_key = Keys(edge.keys.signing.activated("old"), edge.keys.gateway_file)
    links = [
        edge.link("obj.bin"),
        old_key.sign(f"/{edge.folder}/obj.bin", sub="alice", expires_in=60),
        edge.link("obj.bin", sub="bob", expires_in=3600),
        edge.link("obj.bin", prefix=f"/{edge.folder}/"),
    ]
    async with edge.gateway() as gw:
        answers = [await fetch(gw, link) for link in links]
        entries = len(gw.services.cache.tiers.objects) if gw.services.cache else None
    assert [(a.status, a.body) for a in answers if a is not None] == [(200, body)] * len(links)
    assert edge.fetched("obj.bin") == slice_ranges(len(body))
    assert entries == 1


OVERRIDES = {
    "response_content_type": "application/pdf",
    "response_content_disposition": 'attachment; filename="report.pdf"',
}


@pytest.mark.parametrize(
    "order",
    [("overrides", "plain", "overrides", "plain"), ("plain", "overrides", "plain")],
    ids=["filled-by-overrides", "filled-plain"],
)
@pytest.mark.parametrize("tier", list(BODIES))
async def test_signed_overrides_are_applied_per_request_and_never_stored(
    edge: Edge, tier: str, order: tuple[str, ...]
) -> None:
    body = BODIES[tier]
    edge.put("obj.bin", body, ContentType="text/plain")
    async with edge.gateway() as gw:
        seen = []
        for kind in order:
            link = edge.link("obj.bin", **(OVERRIDES if kind == "overrides" else {}))
            async with gw.session.get(gw.url(link)) as response:
                assert await response.read() == body
                seen.append(
                    (response.headers["Content-Type"], response.headers.get("Content-Disposition"))
                )
        assert hits(gw) == len(order) - 1
    expected = {
        "overrides": ("application/pdf", 'attachment; filename="report.pdf"'),
        "plain": ("text/plain", None),
    }
    assert seen == [expected[kind] for kind in order]
    assert edge.fetched("obj.bin") == slice_ranges(len(body))


@pytest.mark.parametrize("tier", list(BODIES))
async def test_a_cookie_is_set_per_request_and_never_stored(edge: Edge, tier: str) -> None:
    body = BODIES[tier]
    edge.put("obj.bin", body)
    prefix_link = edge.link("obj.bin", prefix=f"/{edge.folder}/")
    async with edge.gateway(token_cookie="true") as gw:
        async with gw.session.get(gw.url(prefix_link)) as response:
            assert await response.read() == body
            cookie = response.headers.get("Set-Cookie")
        async with gw.session.get(gw.url(edge.link("obj.bin"))) as response:
            assert await response.read() == body
            again = response.headers.get("Set-Cookie")
        assert hits(gw) == 1
    assert cookie is not None
    assert cookie.startswith("EdgeToken=")
    assert again is None


# --- HTTP semantics do not depend on the cache ------------------------------------------------

LONG_AGO = "Mon, 01 Jan 2001 00:00:00 GMT"
CASES: dict[str, tuple[str, Callable[[str, str], dict[str, str]]]] = {
    "get": ("GET", lambda etag, modified: {}),
    "head": ("HEAD", lambda etag, modified: {}),
    "range-first-bytes": ("GET", lambda etag, modified: {"Range": "bytes=0-99"}),
    "range-across-slices": (
        "GET",
        lambda etag, modified: {"Range": f"bytes={SLICE - 10}-{SLICE + 10}"},
    ),
    "range-open-ended": ("GET", lambda etag, modified: {"Range": "bytes=1000-"}),
    "range-suffix": ("GET", lambda etag, modified: {"Range": "bytes=-300"}),
    "range-past-the-end": ("GET", lambda etag, modified: {"Range": "bytes=999999999-"}),
    "range-empty-suffix": ("GET", lambda etag, modified: {"Range": "bytes=-0"}),
    "ranges-several": ("GET", lambda etag, modified: {"Range": "bytes=0-1,5-6"}),
    "head-range": ("HEAD", lambda etag, modified: {"Range": "bytes=10-19"}),
    "if-none-match": ("GET", lambda etag, modified: {"If-None-Match": etag}),
    "if-none-match-other": ("GET", lambda etag, modified: {"If-None-Match": '"other"'}),
    "if-modified-since": ("GET", lambda etag, modified: {"If-Modified-Since": modified}),
    "if-match-other": ("GET", lambda etag, modified: {"If-Match": '"other"'}),
    "if-unmodified-since": ("GET", lambda etag, modified: {"If-Unmodified-Since": LONG_AGO}),
    "if-range-same": (
        "GET",
        lambda etag, modified: {"Range": "bytes=0-99", "If-Range": etag},
    ),
    "if-range-other": (
        "GET",
        lambda etag, modified: {"Range": "bytes=0-99", "If-Range": '"other"'},
    ),
    "if-range-date": (
        "GET",
        lambda etag, modified: {"Range": "bytes=0-99", "If-Range": modified},
    ),
}


@pytest.mark.parametrize("tier", list(BODIES))
@pytest.mark.parametrize("case", list(CASES))
async def test_an_answer_is_the_same_with_the_cache_off_cold_and_warm(
    edge: Edge, case: str, tier: str
) -> None:
    """Status, every header but Date and Age, and the body, byte for byte."""
    edge.put("obj.bin", BODIES[tier], ContentType="text/plain")
    link = edge.link("obj.bin")
    async with edge.gateway(cache="false") as off, edge.gateway() as on:
        async with off.session.head(off.url(link)) as response:
            validators = response.headers["ETag"], response.headers["Last-Modified"]
        method, make_headers = CASES[case]
        headers = make_headers(*validators)
        without = await fetch(off, link, headers, method)
        cold = await fetch(on, link, headers, method)
        await fetch(on, link)
        warm = await fetch(on, link, headers, method)
        warm_hits = hits(on)

    assert without is not None
    assert cold == without
    assert warm == without
    assert warm_hits >= 1


# --- one version per response ------------------------------------------------------------------


REPLACEMENTS: dict[str, Callable[[], bytes]] = {
    "same-size": lambda: os.urandom(len(SLICED)),
    "longer": lambda: os.urandom(len(SLICED) + SLICE),
    "shorter": lambda: os.urandom(SLICE // 2),
}
READS = {
    "whole": None,
    "a-later-slice": f"bytes={2 * SLICE}-{2 * SLICE + 99}",
    "across-slices": f"bytes={SLICE - 100}-{SLICE + 99}",
}


@pytest.mark.parametrize("read", list(READS))
@pytest.mark.parametrize("replacement", list(REPLACEMENTS))
async def test_a_response_is_never_stitched_from_two_versions(
    edge: Edge, replacement: str, read: str
) -> None:
    """Slice 0 of the old version is cached, then the object is replaced: a response needing
    other slices is the new version throughout (as storage answers without the cache), or its
    connection is aborted; and the next request gets the new version."""
    edge.put("obj.bin", SLICED)
    link = edge.link("obj.bin")
    wanted = READS[read]
    headers = {} if wanted is None else {"Range": wanted}
    async with edge.gateway() as gw, edge.gateway(cache="false") as plain:
        first = await fetch(gw, link, {"Range": "bytes=0-99"})
        assert first is not None
        assert (first.status, first.body) == (206, SLICED[:100])
        assert edge.fetched("obj.bin") == slice_ranges(SLICE)  # slice 0 only
        edge.put("obj.bin", REPLACEMENTS[replacement]())

        answer = await fetch(gw, link, headers)
        truth = await fetch(plain, link, headers)
        assert answer is ABORTED or answer.body is None or answer == truth

        after = await fetch(gw, edge.link("obj.bin"))
        assert after == await fetch(plain, edge.link("obj.bin"))


# --- collapsed forwarding ----------------------------------------------------------------------

BIG = 64 * 1024 * 1024
CLIENTS = 100
DEFAULT_SLICE = 4 * 1024 * 1024


async def test_concurrent_clients_on_a_cold_object_fetch_each_slice_once(edge: Edge) -> None:
    body = os.urandom(BIG)
    expected = hashlib.sha1(body, usedforsecurity=False).hexdigest()
    edge.put("big.bin", body)
    del body

    async with edge.gateway(cache_slice_bytes=None) as gw:
        link = edge.link("big.bin")
        connector = aiohttp.TCPConnector(limit=0)
        async with aiohttp.ClientSession(connector=connector, auto_decompress=False) as session:

            async def client() -> tuple[int, str]:
                digest = hashlib.sha1(usedforsecurity=False)
                async with session.get(gw.url(link)) as response:
                    async for chunk in response.content.iter_any():
                        digest.update(chunk)
                    return response.status, digest.hexdigest()

            results = await asyncio.gather(*(client() for _ in range(CLIENTS)))
        collapsed = gw.metric("gateway_cache_collapsed_total")

    assert results == [(200, expected)] * CLIENTS
    assert edge.fetched("big.bin") == slice_ranges(BIG, DEFAULT_SLICE)
    assert collapsed > 0


async def test_a_cold_objects_first_bytes_reach_every_client_before_its_slice_is_complete(
    edge: Edge,
) -> None:
    """The first bytes go out as they arrive from storage, to the request that started the
    fill and to one that joined it, while storage still holds the rest of the first slice."""
    edge.put("obj.bin", SLICED)
    held = edge.storage.hold_at(edge.storage.from_target + SLICE // 2)
    async with edge.gateway() as gw:
        async with asyncio.timeout(30):  # rather than wait for the whole slice
            first = await gw.session.get(gw.url(edge.link("obj.bin")))
            await held.wait()
            early = [await first.content.readexactly(1000)]
            joined = await gw.session.get(gw.url(edge.link("obj.bin")))
            early.append(await joined.content.readexactly(1000))
        assert edge.storage.from_target <= SLICE // 2 + 1  # storage still holds the rest
        edge.storage.release()
        bodies = [e + await r.read() for e, r in zip(early, (first, joined), strict=True)]
        collapsed = gw.metric("gateway_cache_collapsed_total")
    assert bodies == [SLICED, SLICED]
    assert collapsed >= 1
    assert edge.fetched("obj.bin") == slice_ranges(len(SLICED))  # each slice once


async def test_a_lone_request_collapses_with_nothing(edge: Edge) -> None:
    """Its own fills (the first slice, each slice read ahead) are not counted as collapsed."""
    edge.put("obj.bin", SLICED)
    async with edge.gateway() as gw:
        answer = await fetch(gw, edge.link("obj.bin"))
        collapsed = gw.metric("gateway_cache_collapsed_total")
    assert answer is not None
    assert answer.body == SLICED
    assert collapsed == 0


@pytest.mark.parametrize("cache", ["false", "true"], ids=["cache_off", "cache_cold"])
async def test_a_client_gone_before_storage_answered_is_recorded_gone_with_nothing_sent(
    edge: Edge, cache: str
) -> None:
    """A small object is answered whole once storage's answer is in: not for a client that
    left meanwhile, whose request is recorded as such."""
    edge.put("obj.bin", SMALL)
    held = edge.storage.hold_at(edge.storage.from_target)  # storage's answer waits
    async with edge.gateway(cache=cache) as gw:
        _reader, writer = await asyncio.open_connection("127.0.0.1", gw.server.port)
        writer.write(f"GET {edge.link('obj.bin')} HTTP/1.1\r\nHost: t\r\n\r\n".encode())
        await writer.drain()
        async with asyncio.timeout(30):
            await held.wait()
        writer.close()
        await eventually(lambda: not gw.server.server.connections)  # the gateway saw it go
        edge.storage.release()

        def recorded(reason: str) -> float:
            return gw.metric("gateway_requests_total", method="GET", status="200", reason=reason)

        await eventually(lambda: recorded("client_disconnected") == 1)
        ok, sent = recorded("ok"), gw.metric("gateway_sent_bytes_total")
    assert (ok, sent) == (0, 0)


# --- the disk tier across restarts, and damage ------------------------------------------------


async def test_a_restarted_gateway_serves_its_disk_cache_without_asking_storage(
    edge: Edge,
) -> None:
    edge.put("obj.bin", SLICED)
    async with edge.gateway() as first:
        warm = await fetch(first, edge.link("obj.bin"))
        assert warm is not None
        assert warm.body == SLICED
    asked = edge.asked("obj.bin")

    async with edge.gateway() as second:
        whole = await fetch(second, edge.link("obj.bin"))
        part = await fetch(
            second, edge.link("obj.bin"), {"Range": f"bytes={SLICE - 5}-{SLICE + 4}"}
        )
        served = hits(second)

    assert whole is not None
    assert part is not None
    assert (whole.status, whole.body) == (200, SLICED)
    assert (part.status, part.body) == (206, SLICED[SLICE - 5 : SLICE + 5])
    assert served == 2
    assert edge.asked("obj.bin") == asked


async def test_a_gateway_restarted_with_a_smaller_disk_tier_keeps_within_it(
    edge: Edge,
) -> None:
    edge.put("obj.bin", SLICED)
    async with edge.gateway() as first:
        warm = await fetch(first, edge.link("obj.bin"))
        assert warm is not None
        assert warm.body == SLICED
    assert len(list(edge.cache_dir.glob("??/*.*.*"))) == 5

    bound = 2 * SLICE
    async with edge.gateway(cache_disk_bytes=str(bound)) as second:
        assert second.services.cache is not None
        held = second.services.cache.tiers.disk.used
        on_disk = sum(path.stat().st_size for path in edge.cache_dir.glob("??/*.*.*"))
        again = await fetch(second, edge.link("obj.bin"))

    assert 0 < held <= bound
    assert on_disk == held
    assert again is not None
    assert again.body == SLICED


async def test_a_gateway_killed_mid_fill_serves_the_right_bytes_after_a_restart(
    edge: Edge, tmp_path: Path
) -> None:
    edge.put("obj.bin", SLICED)
    held = edge.storage.hold_at(edge.storage.from_target + 2 * SLICE + SLICE // 2)
    settings = {
        "origin": f"s3://{BUCKET}/{ROOT}",
        "keyring": str(edge.keys.gateway_file),
        "cache": "true",
        "cache_dir": str(edge.cache_dir),
        "cache_slice_bytes": str(SLICE),
        "s3_endpoint_url": edge.storage.url,
    }
    # (in a thread: the forwarder between it and storage runs on this loop)
    crashed = await asyncio.to_thread(
        start_gateway, tmp_path, settings, env=edge.s3.env(), name="crashed"
    )
    try:
        async with aiohttp.ClientSession() as session:
            response = await session.get(crashed.url(edge.link("obj.bin")))
            assert response.status == 200
            async with asyncio.timeout(30):
                await held.wait()  # two and a half slices sent by storage, the rest held
            crashed.kill()  # mid-fill, with no chance to tidy up
            response.close()
    finally:
        await asyncio.to_thread(crashed.stop)
        edge.storage.release()
    async with edge.gateway() as restarted:
        whole = await fetch(restarted, edge.link("obj.bin"))
        across = await fetch(
            restarted, edge.link("obj.bin"), {"Range": f"bytes={SLICE - 5}-{3 * SLICE + 4}"}
        )
        again = await fetch(restarted, edge.link("obj.bin"))
    assert whole is not None
    assert across is not None
    assert again is not None
    assert (whole.status, whole.body) == (200, SLICED)
    assert (across.status, across.body) == (206, SLICED[SLICE - 5 : 3 * SLICE + 5])
    assert (again.status, again.body) == (200, SLICED)


@pytest.mark.parametrize("headers", [{}, {"Range": f"bytes={SLICE - 5}-{SLICE + 4}"}])
async def test_an_object_larger_than_the_disk_tier_streams_through_uncached(
    edge: Edge, headers: dict[str, str]
) -> None:
    edge.put("obj.bin", SLICED)
    async with edge.gateway(cache_disk_bytes=str(2 * SLICE)) as gw:
        answers = [await fetch(gw, edge.link("obj.bin"), headers) for _ in range(2)]
        bypassed = gw.metric("gateway_cache_requests_total", state="bypass")
        held = len(gw.services.cache.tiers.objects) if gw.services.cache else None
    expected = SLICED[SLICE - 5 : SLICE + 5] if headers else SLICED
    assert [a.body for a in answers if a is not None] == [expected] * 2
    assert bypassed == 2
    assert held == 0


@pytest.mark.parametrize(
    ("zero_copy", "by_sendfile"), [("true", True), ("false", False)], ids=["sendfile", "copied"]
)
async def test_a_disk_hit_is_sent_from_its_slice_files_by_sendfile(
    edge: Edge, zero_copy: str, by_sendfile: bool
) -> None:
    big = os.urandom(20 * SLICE + 7)  # past the zero-copy threshold (1 MiB)
    first, last = SLICE - 5, 18 * SLICE + 4  # across slices, from and to their middles
    edge.put("big.bin", big)
    async with edge.gateway(zero_copy=zero_copy) as gw:
        cold = await fetch(gw, edge.link("big.bin"))
        before = gw.metric("gateway_sendfile_bytes_total")
        whole = await fetch(gw, edge.link("big.bin"))
        part = await fetch(gw, edge.link("big.bin"), {"Range": f"bytes={first}-{last}"})
        sent = gw.metric("gateway_sendfile_bytes_total") - before
        served = hits(gw)
    assert cold is not None
    assert whole is not None
    assert part is not None
    assert (cold.body, whole.body, part.body) == (big, big, big[first : last + 1])
    assert served == 2
    assert sent == (len(big) + last + 1 - first if by_sendfile else 0)


def slice_file(cache_dir: Path, index: int) -> Path:
    [found] = cache_dir.glob(f"??/*.{index}.*")
    return found


def truncate(path: Path) -> None:
    os.truncate(path, path.stat().st_size // 2)


def flip_a_byte(path: Path) -> None:
    with path.open("r+b") as handle:
        handle.seek(1000)
        byte = handle.read(1)
        handle.seek(1000)
        handle.write(bytes([byte[0] ^ 0x01]))


def flip_a_byte_later(path: Path) -> None:
    """As a writer a tick of the file system's clock after the slice's own write leaves it
    (one within that tick leaves no trace in the file's times: `tiers.fingerprint`)."""
    written = path.stat()
    flip_a_byte(path)
    os.utime(path, ns=(written.st_atime_ns, written.st_mtime_ns + 1_000_000_000))


DAMAGES = {
    "truncated": truncate,
    "flipped-byte": flip_a_byte,
    "flipped-byte-later": flip_a_byte_later,
}


@pytest.mark.parametrize(
    ("damage", "restart"),
    [
        ("truncated", False),
        ("truncated", True),
        ("flipped-byte", True),
        ("flipped-byte-later", False),
    ],
    ids=[
        "truncated-while-running",
        "truncated-across-a-restart",
        "flipped-byte-across-a-restart",
        "flipped-byte-while-running",
    ],
)
async def test_a_damaged_slice_file_is_refetched(edge: Edge, damage: str, restart: bool) -> None:
    """A slice is checked against its size and file fingerprint whenever it is used, and
    against its CRC-32 once per process and again whenever the file changed: damage is a miss
    for that slice, refetched, never bytes served wrong."""
    edge.put("obj.bin", SLICED)
    async with edge.gateway() as gw:
        warm = await fetch(gw, edge.link("obj.bin"))
        assert warm is not None
        assert warm.body == SLICED
        if not restart:
            DAMAGES[damage](slice_file(edge.cache_dir, 1))
            again = await fetch(gw, edge.link("obj.bin"))
    if restart:
        DAMAGES[damage](slice_file(edge.cache_dir, 1))
        async with edge.gateway() as gw:
            again = await fetch(gw, edge.link("obj.bin"))

    assert again is not None
    assert (again.status, again.body) == (200, SLICED)
    refetched = f"bytes={SLICE}-{2 * SLICE - 1}"
    assert edge.fetched("obj.bin") == sorted([*slice_ranges(len(SLICED)), refetched])


def tmp_becomes_a_file(cache_dir: Path) -> None:
    shutil.rmtree(cache_dir / "tmp")
    (cache_dir / "tmp").write_bytes(b"not a directory")


def cache_dir_is_a_file(cache_dir: Path) -> None:
    cache_dir.write_bytes(b"not a directory")


@pytest.mark.parametrize(
    ("spoil", "before_start"),
    [(tmp_becomes_a_file, False), (cache_dir_is_a_file, True)],
    ids=["tmp-becomes-a-file-while-running", "cache-dir-is-a-file-at-start"],
)
async def test_an_unusable_cache_directory_is_bypassed(
    edge: Edge, spoil: Callable[[Path], None], before_start: bool
) -> None:
    """Writes refused (here: a file where a directory must be, since tests may run as root,
    where permissions do not stop writes) cost the cache, never a request."""
    edge.put("obj.bin", SLICED)
    if before_start:
        spoil(edge.cache_dir)
    async with edge.gateway() as gw:
        if not before_start:
            spoil(edge.cache_dir)
        answers = [await fetch(gw, edge.link("obj.bin")) for _ in range(2)]
        bypasses = gw.metric("gateway_cache_bypasses_total")
        served = hits(gw)
    assert [(a.status, a.body) for a in answers if a is not None] == [(200, SLICED)] * 2
    assert bypasses >= 2
    assert served == 0


# --- freshness from the object's own metadata in the bucket -----------------------------------


@pytest.mark.parametrize("tier", list(BODIES))
async def test_an_object_stored_with_no_store_is_never_kept(edge: Edge, tier: str) -> None:
    body = BODIES[tier]
    edge.put("obj.bin", body, CacheControl="no-store")
    async with edge.gateway() as gw:
        answers = [await fetch(gw, edge.link("obj.bin")) for _ in range(2)]
        bypassed = gw.metric("gateway_cache_requests_total", state="bypass")
        held = len(gw.services.cache.tiers.objects) if gw.services.cache else None
    assert [a.body for a in answers if a is not None] == [body, body]
    assert (bypassed, held) == (2, 0)


def expires_in(seconds: float) -> datetime.datetime:
    return datetime.datetime.fromtimestamp(time.time() + seconds, tz=datetime.UTC)


Stored = Callable[[], dict[str, object]]  # put_object's metadata, made when the test runs
FRESH_BEYOND_TTL: dict[str, Stored] = {
    "max-age": lambda: {"CacheControl": "max-age=3600"},
    "expires": lambda: {"Expires": expires_in(3600)},
}


@pytest.mark.parametrize("tier", list(BODIES))
@pytest.mark.parametrize("stored", list(FRESH_BEYOND_TTL))
async def test_an_object_fresh_by_its_own_metadata_outlives_the_default_ttl(
    edge: Edge, tier: str, stored: str
) -> None:
    body = BODIES[tier]
    edge.put("obj.bin", body, **FRESH_BEYOND_TTL[stored]())
    async with edge.gateway(cache_ttl="10") as gw:
        cold = await fetch(gw, edge.link("obj.bin"))
        age(gw, edge.key("obj.bin"), 600)  # far past the TTL, well within the object's own
        asked = edge.asked("obj.bin")
        warm = await fetch(gw, edge.link("obj.bin"))
        served = hits(gw)
    assert cold is not None
    assert warm is not None
    assert (cold.body, warm.body) == (body, body)
    assert served == 1
    assert edge.asked("obj.bin") == asked  # storage was not asked again


STALE_AT_ONCE: dict[str, Stored] = {
    "max-age=0": lambda: {"CacheControl": "max-age=0"},
    "expires-past": lambda: {"Expires": expires_in(-3600)},
}


@pytest.mark.parametrize("tier", list(BODIES))
@pytest.mark.parametrize("stored", list(STALE_AT_ONCE))
async def test_a_stale_object_is_revalidated_with_storage_by_its_etag_without_moving_its_bytes(
    edge: Edge, tier: str, stored: str
) -> None:
    body = BODIES[tier]
    etag = edge.put("obj.bin", body, **STALE_AT_ONCE[stored]())
    async with edge.gateway(cache_ttl="3600") as gw:
        cold = await fetch(gw, edge.link("obj.bin"))
        moved = edge.storage.from_target
        again = await fetch(gw, edge.link("obj.bin"))
        revalidated = gw.metric("gateway_cache_requests_total", state="revalidated")
    asked = edge.storage.requests_for(f"/{BUCKET}/{edge.key('obj.bin')}", method="HEAD")
    assert cold is not None
    assert again is not None
    assert (cold.body, again.body) == (body, body)
    assert revalidated == 1
    assert asked[-1].headers.get("if-none-match") == etag  # SeaweedFS answered it 304:
    assert edge.storage.from_target - moved < 1000  # a head, not the object again


# --- stale-if-error ------------------------------------------------------------------------


def age(gw: RunningGateway, key: str, seconds: float) -> None:
    """As if the entry had been fetched `seconds` earlier."""
    assert gw.services.cache is not None
    entry = gw.services.cache.entry(key)
    assert entry is not None
    entry.validated -= seconds
    entry.fresh_until -= seconds


STALE_IF_ERROR = 60
TTL = 30
OUTAGES = {"down": (502, "origin_error"), "silent": (504, "origin_timeout")}


@pytest.mark.parametrize("tier", list(BODIES))
@pytest.mark.parametrize("outage", list(OUTAGES))
@pytest.mark.parametrize(
    ("stale_for", "served"),
    [(STALE_IF_ERROR - 10, True), (STALE_IF_ERROR + 10, False)],
    ids=["within-stale-if-error", "beyond-it"],
)
async def test_a_stale_copy_is_served_while_storage_fails_within_stale_if_error(
    edge: Edge, tier: str, outage: str, stale_for: int, served: bool
) -> None:
    body = BODIES[tier]
    edge.put("obj.bin", body)
    async with edge.gateway(
        cache_ttl=str(TTL), cache_stale_if_error=str(STALE_IF_ERROR), first_byte_timeout="0.5"
    ) as gw:
        warm = await fetch(gw, edge.link("obj.bin"))
        assert warm is not None
        assert warm.body == body
        age(gw, edge.key("obj.bin"), TTL + stale_for)
        if outage == "down":
            await edge.storage.close()
        else:
            await edge.storage.cut()
        async with gw.session.get(gw.url(edge.link("obj.bin"))) as response:
            answer = (response.status, await response.read())
            shown_age = int(response.headers.get("Age", "-1"))
        stale = gw.metric("gateway_cache_requests_total", state="stale")

    if served:
        assert answer == (200, body)
        assert shown_age >= TTL + stale_for
        assert stale == 1
    else:
        status, code = OUTAGES[outage]
        assert answer == (status, b'{"error":"%s"}\n' % code.encode())
        assert stale == 0
