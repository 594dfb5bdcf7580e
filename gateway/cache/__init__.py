"""The edge cache: objects already verified-for are served without asking storage again.

It sits after verification and revocation, never before: the pipeline asks it only for a
request whose token passed, so a hit is exactly as authorized as a miss. Its key is the object
key (and the slice number), never anything of the request's authorization; the signed overrides
and cookies are applied to the response after the cache and are never stored.

    tiers.py       the index, the memory tier (small objects) and the disk tier (slices)
    policy.py      S3-FIFO eviction (scan-resistant), and LRU for comparison
    freshness.py   how long an object stays fresh (its own Cache-Control/Expires, or the TTL)
    __init__.py    fills (collapsed: one storage request per slice, however many clients
                   wait) and the body a response streams, slice by slice

A large object is fetched and kept in fixed-size slices, so a seek into a film fetches only the
slices it touches, and the first bytes go out as soon as the first slice starts arriving. Every
slice is checked against the object's version (ETag): storage answering with another version
drops the old slices; before any byte was sent the request starts over, after that the
connection is aborted, so a response is never stitched from two versions.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import os
import time
import zlib
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from dataclasses import dataclass
from typing import BinaryIO, Final

from gateway.cache.freshness import lifetime
from gateway.cache.tiers import Cached, Tiers
from gateway.http.ranges import ByteRange, RangeSpec
from gateway.storage import (
    NotFound,
    ObjectBody,
    ObjectMeta,
    ObjectStore,
    OriginError,
    RangeNotSatisfiable,
    SocketBody,
    StorageError,
)

log = logging.getLogger("gateway.cache")

READ_BYTES: Final = 256 * 1024  # per read of a slice file


class State(enum.StrEnum):
    """The access log's `cache` field and the metric label."""

    HIT = "hit"
    MISS = "miss"
    REVALIDATED = "revalidated"
    STALE = "stale"
    BYPASS = "bypass"


class VersionChanged(OriginError):
    """Storage answered a slice with another version of the object than the cached one."""


@dataclass(frozen=True, slots=True)
class Limits:
    disk_bytes: int
    memory_bytes: int
    memory_object_bytes: int
    slice_bytes: int
    ttl: float
    stale_if_error: float


class Fill:
    """One slice being fetched from storage, shared by every request that needs it: readers
    stream its bytes as they arrive, not after the slice is stored.

    Every miss makes one, so it is kept lean (slots; waiters are bare futures made only when
    someone has to wait, no asyncio.Event): its cost is on the path that must be no dearer
    than reading without the cache."""

    __slots__ = (
        "_waiters",
        "chunks",
        "done",
        "error",
        "meta",
        "purged",
        "range",
        "readers",
        "requests",
    )

    def __init__(self) -> None:
        self.meta: ObjectMeta | None = None
        self.range: ByteRange | None = None
        self.chunks: list[bytes] = []
        self.done = False
        self.error: BaseException | None = None
        self.readers = 0  # responses that read it (more than one: their fetches collapsed)
        self.purged = False  # purged while under way: its readers get the bytes, the cache not
        self.requests: set[asyncio.Task[object] | None] = set()  # the requests it serves
        self._waiters: list[asyncio.Future[None]] = []

    def started(self, meta: ObjectMeta, byte_range: ByteRange | None) -> None:
        self.meta, self.range = meta, byte_range
        self._wake()

    def append(self, chunk: bytes) -> None:
        self.chunks.append(chunk)
        if self._waiters:
            self._wake()

    def finish(self) -> None:
        self.done = True
        self._wake()

    def fail(self, error: BaseException) -> None:
        self.error = error
        self._wake()

    async def head(self) -> ObjectMeta:
        """The object's metadata as storage sent it with this slice."""
        while self.meta is None and self.error is None:
            await self._wait()
        if self.meta is None:
            assert self.error is not None
            raise self.error
        return self.meta

    async def read(self, offset: int, length: int) -> AsyncIterator[bytes]:
        """Bytes `offset` to `offset + length` of the slice, as they come."""
        position = index = 0
        end = offset + length
        while True:
            while index < len(self.chunks):
                chunk = self.chunks[index]
                index += 1
                start, position = position, position + len(chunk)
                if position > offset and start < end:
                    yield chunk[max(offset - start, 0) : min(end - start, len(chunk))]
                if position >= end:
                    return
            if self.error is not None:
                raise OriginError(f"storage failed mid-slice: {self.error}")
            if self.done:
                raise OriginError("storage sent a slice shorter than its range")
            await self._wait()

    async def _wait(self) -> None:
        """Until the next change: the head, a chunk, the end or a failure."""
        waiter = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        await waiter

    def _wake(self) -> None:
        waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)


class Cache:
    def __init__(self, tiers: Tiers, limits: Limits) -> None:
        self.tiers = tiers
        self.limits = limits
        self.fills: dict[tuple[str, int], Fill] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self.collapsed = 0  # requests that joined a fill already under way
        self.bypassed = 0  # slices not stored because the disk could not take them
        self.cache_bytes = 0  # body bytes sent from the cache
        self.storage_bytes = 0  # body bytes fetched from storage into the cache
        self._first_slice = self._slice_spec(0)  # what most misses ask storage for

    def _slice_spec(self, index: int) -> RangeSpec:
        size = self.limits.slice_bytes
        return RangeSpec(first=index * size, last=(index + 1) * size - 1, suffix=None)

    # -- metadata ----------------------------------------------------------------------------

    def entry(self, key: str) -> Cached | None:
        return self.tiers.get(key)

    def remember(self, key: str, meta: ObjectMeta, now: float) -> Cached | None:
        """An entry for this version, or None (and no entry) when it must not be cached:
        `no-store`, or neither tier can hold it (larger than the disk tier, or the disk tier is
        off and it is too large for memory), so that it streams through as a bypass."""
        limits = self.limits
        fresh_for = lifetime(meta, limits.ttl, now)
        small = meta.size <= min(limits.memory_object_bytes, limits.slice_bytes)  # memory tier
        on_disk = meta.size <= limits.disk_bytes and self.tiers.disk_usable
        if fresh_for is None or not (small or on_disk):
            self.tiers.drop(key)
            if fresh_for is not None and not self.tiers.disk_usable:
                # An entry without a place for its bytes would pass for a hit while every byte
                # came from storage: the disk tier is off (unusable at start-up).
                self.bypassed += 1
            return None
        return self.tiers.remember(key, meta, now, fresh_for)

    def fresh(self, cached: Cached, now: float) -> bool:
        return now < cached.fresh_until

    def holds(self, cached: Cached, byte_range: ByteRange | None) -> bool:
        """Whether every slice `byte_range` needs (None: the whole object) is held, so that a
        response is a hit rather than fetched from storage."""
        if cached.body is not None or not cached.meta.size:
            return True
        start, end = (
            (0, cached.meta.size - 1) if byte_range is None else (byte_range.start, byte_range.end)
        )
        size = cached.slice_bytes
        return all(index in cached.slices for index in range(start // size, end // size + 1))

    async def revalidate(
        self, store: ObjectStore, cached: Cached, now: float
    ) -> tuple[Cached | None, State]:
        """A stale entry checked with storage: refreshed (304), replaced, or, when storage fails
        and `stale_if_error` allows it, served stale."""
        try:
            meta = await store.revalidate(cached.key, cached.meta.etag or "")
        except StorageError as exc:
            if exc.kind in ("origin_error", "origin_timeout"):
                stale_for = now - cached.fresh_until
                if stale_for <= self.limits.stale_if_error:
                    log.warning("cache: storage failed (%s); serving a stale copy", exc.kind)
                    return cached, State.STALE
            if exc.kind == "not_found":
                self.tiers.drop(cached.key)
            raise
        if meta is None:
            fresh_for = lifetime(cached.meta, self.limits.ttl, now)
            self.tiers.refresh(cached, now, fresh_for or 0.0)
            return cached, State.REVALIDATED
        return self.remember(cached.key, meta, now), State.MISS

    def first_slice(self, spec: RangeSpec | None) -> int | None:
        """The slice a GET with this range starts in, if it can be told without the size."""
        if spec is None:
            return 0
        if spec.first is None or spec.beyond_any_object:
            return None  # a suffix, or past any end: only the size says where
        return spec.first // self.limits.slice_bytes

    def purge(self, key: str) -> bool:
        self._detach_fills(lambda fill_key: fill_key == key)
        return self.tiers.drop(key)

    def purge_prefix(self, prefix: str) -> int:
        self._detach_fills(lambda fill_key: fill_key.startswith(prefix))
        keys = self.tiers.keys_under(prefix)
        for key in keys:
            self.tiers.drop(key)
        return len(keys)

    def _detach_fills(self, purged: Callable[[str], bool]) -> None:
        """Fills under way for purged keys may carry the version just purged: their readers
        get their bytes, but the cache keeps none of them, and new requests start afresh."""
        for fill_key, index in [name for name in self.fills if purged(name[0])]:
            self.fills.pop((fill_key, index)).purged = True

    # -- fills -------------------------------------------------------------------------------

    def fill(self, store: ObjectStore, key: str, index: int, etag: str | None) -> Fill:
        """The fill of slice `index` of `key`: the one under way, or a new one. `etag` is the
        version the caller expects (None: whatever storage has). A request joining a fill that
        another one started counts as collapsed; asking again for one it started or joined
        already (its first slice, its read-ahead) does not."""
        request = asyncio.current_task()
        running = self.fills.get((key, index))
        if running is not None and running.error is None:
            if request not in running.requests:
                running.requests.add(request)
                self.collapsed += 1
            return running
        fill = Fill()
        fill.requests.add(request)
        self.fills[(key, index)] = fill
        task = asyncio.create_task(self._fetch(fill, store, key, index, etag), name="cache-fill")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return fill

    async def _fetch(
        self, fill: Fill, store: ObjectStore, key: str, index: int, etag: str | None
    ) -> None:
        spec = self._first_slice if index == 0 else self._slice_spec(index)
        temporary: tuple[int, str] | None = None
        try:
            body = await store.get(key, spec)
        except BaseException as exc:
            if etag is not None and isinstance(exc, NotFound | RangeNotSatisfiable):
                # The slice of the version expected is gone (deleted, or replaced by a shorter
                # one): like another ETag, the old slices must go, or every later request would
                # be served the old ones and broken at this slice until the entry expired.
                self.tiers.drop(key)
                exc = VersionChanged(f"storage no longer holds this version: {exc}")
            fill.fail(exc)
            self._forget(key, index, fill)
            if not isinstance(exc, Exception):
                raise
            return
        try:
            meta = body.meta
            if etag is not None and meta.etag != etag:
                raise VersionChanged("storage holds another version of the object")
            cached = None if fill.purged else self.tiers.get(key)
            if not fill.purged and (
                cached is None or cached.meta.etag != meta.etag or cached.meta.size != meta.size
            ):
                cached = self.remember(key, meta, time.time())  # None: not to be cached
            fill.started(meta, body.range)
            if cached is not None and not self.tiers.fits_memory(cached):
                temporary = self.tiers.temporary()
                if temporary is None:
                    self.bypassed += 1
            crc = 0
            whole = body.arrived()  # a small object, with storage's head: no stream to run
            if whole is not None:
                temporary, crc = self._took(fill, whole, temporary, crc)
            else:
                chunks = body.chunks()
                try:
                    async for chunk in chunks:
                        temporary, crc = self._took(fill, chunk, temporary, crc)
                finally:
                    await chunks.aclose()  # not `contextlib.aclosing`: two coroutines fewer
            fill.finish()
            self._keep(key, index, fill, meta, temporary, crc)
            temporary = None
        except BaseException as exc:
            fill.fail(exc)
            if isinstance(exc, VersionChanged):
                self.tiers.drop(key)
            if not isinstance(exc, Exception):
                raise
        finally:
            if temporary is not None:
                os.close(temporary[0])
                with contextlib.suppress(OSError):
                    os.unlink(temporary[1])
            self._forget(key, index, fill)
            await body.release()

    def _took(
        self, fill: Fill, chunk: bytes, temporary: tuple[int, str] | None, crc: int
    ) -> tuple[tuple[int, str] | None, int]:
        """A chunk from storage: to the fill's readers, and to the slice file being written
        (and its CRC-32) while that can be written."""
        fill.append(chunk)
        self.storage_bytes += len(chunk)
        if temporary is None:
            return None, crc
        return self._write(temporary, chunk), zlib.crc32(chunk, crc)

    def _write(self, temporary: tuple[int, str], chunk: bytes) -> tuple[int, str] | None:
        fd, path = temporary
        try:
            view = memoryview(chunk)
            while view:
                view = view[os.write(fd, view) :]
        except OSError as exc:  # a full disk, an I/O error: the response goes on uncached
            self.tiers.disk_failed(exc)
            self.bypassed += 1
            os.close(fd)
            with contextlib.suppress(OSError):
                os.unlink(path)
            return None
        return temporary

    def _keep(
        self,
        key: str,
        index: int,
        fill: Fill,
        meta: ObjectMeta,
        temporary: tuple[int, str] | None,
        crc: int,
    ) -> None:
        cached = self.tiers.get(key)
        if (
            fill.purged
            or cached is None
            or cached.meta.etag != meta.etag
            or cached.meta.size != meta.size
        ):
            if temporary is not None:
                os.close(temporary[0])
                with contextlib.suppress(OSError):
                    os.unlink(temporary[1])
            return
        if self.tiers.fits_memory(cached):
            self.tiers.keep_in_memory(cached, b"".join(fill.chunks))
            return
        if temporary is not None:
            os.close(temporary[0])
            self.tiers.keep_slice(cached, index, temporary[1], crc)

    def _forget(self, key: str, index: int, fill: Fill) -> None:
        if self.fills.get((key, index)) is fill:
            del self.fills[(key, index)]

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError):
                await task

    # -- bodies ------------------------------------------------------------------------------

    async def open(
        self, store: ObjectStore, cached: Cached, byte_range: ByteRange | None
    ) -> CachedBody | MemoryBody:
        """The body to stream for `byte_range` (None: the whole object). Waits until the first
        slice is known to be of this version, so that a version change found now can still be
        answered properly (VersionChanged: the caller starts over)."""
        start, end = (
            (0, cached.meta.size - 1)
            if byte_range is None
            else (
                byte_range.start,
                byte_range.end,
            )
        )
        if cached.body is not None:  # a memory hit: nothing to check, wait for or close
            return MemoryBody(cached.meta, byte_range, self.memory_bytes(cached, byte_range))
        body = CachedBody(self, store, cached, byte_range, start, end)
        if cached.meta.size:
            await body.check_first()
        return body

    def memory_bytes(self, cached: Cached, byte_range: ByteRange | None) -> bytes:
        """The bytes of a memory-tier entry (`cached.body` is set) for `byte_range`, counted as
        a hit."""
        memory = cached.body
        assert memory is not None
        self.tiers.hit(cached)
        if byte_range is None:
            self.cache_bytes += len(memory)
            return memory
        self.cache_bytes += byte_range.length
        return memory[byte_range.start : byte_range.end + 1]


class MemoryBody:
    """A memory-tier hit: its bytes, in one piece (one write with the head)."""

    __slots__ = ("_data", "meta", "range")

    def __init__(self, meta: ObjectMeta, byte_range: ByteRange | None, data: bytes) -> None:
        self.meta, self.range, self._data = meta, byte_range, data

    async def chunks(self) -> AsyncGenerator[bytes, None]:
        if self._data:
            yield self._data

    def arrived(self) -> bytes:
        return self._data

    def socket_body(self) -> SocketBody | None:
        return None

    async def release(self) -> None:
        """Nothing is held open."""


class FillBody:
    """An object found not to be cached (`no-store`, too large) by the fill of its first
    slice: answered from that fill, and from storage for the rest, so that the bytes the fill
    holds are not fetched twice. The rest must be of the fill's version, or the response is
    cut (its head is gone by then), never stitched from two versions."""

    def __init__(
        self,
        store: ObjectStore,
        key: str,
        fill: Fill,
        meta: ObjectMeta,
        byte_range: ByteRange | None,
    ) -> None:
        self.store, self.key, self.fill = store, key, fill
        self.meta, self.range = meta, byte_range
        self._rest: ObjectBody | None = None

    @staticmethod
    def spans(fill: Fill) -> tuple[ByteRange | None, ByteRange | None]:
        """(what the fill holds, the whole object), both None for an empty object."""
        meta = fill.meta
        if meta is None or not meta.size:
            return None, None
        whole = ByteRange(0, meta.size - 1, meta.size)
        return fill.range or whole, whole

    @classmethod
    def covering(cls, fill: Fill, byte_range: ByteRange | None) -> bool:
        """Whether the fill holds the start of `byte_range` (None: the whole object), so that
        a FillBody can answer it."""
        held, whole = cls.spans(fill)
        wanted = byte_range or whole
        return held is not None and wanted is not None and held.start <= wanted.start <= held.end

    async def chunks(self) -> AsyncGenerator[bytes, None]:
        held, whole = self.spans(self.fill)
        wanted = self.range or whole
        assert held is not None
        assert wanted is not None
        last = min(wanted.end, held.end)
        async for chunk in self.fill.read(wanted.start - held.start, last + 1 - wanted.start):
            yield chunk
        if wanted.end > last:
            rest = self._rest = await self.store.get(
                self.key, RangeSpec(first=last + 1, last=wanted.end, suffix=None)
            )
            found = rest.range
            if (
                rest.meta.etag != self.meta.etag
                or found is None
                or (found.start, found.end) != (last + 1, wanted.end)
            ):
                raise VersionChanged("the object changed while it was being sent")
            async for chunk in rest.chunks():
                yield chunk

    def arrived(self) -> None:
        return None  # arriving from a fill, and maybe from storage after it

    def socket_body(self) -> SocketBody | None:
        return None

    async def release(self) -> None:
        rest, self._rest = self._rest, None
        if rest is not None:
            await rest.release()


#: Where a slice's bytes come from: the memory tier (None), its slice file, or a fill.
Source = BinaryIO | Fill | None


@dataclass(frozen=True, slots=True)
class FilePart:
    """`count` bytes from `offset` of a slice file, opened (and checked) before anything was
    sent: deleted meanwhile (evicted, purged), it is still the file that was checked."""

    handle: BinaryIO
    offset: int
    count: int

    async def read(self) -> AsyncIterator[bytes]:
        self.handle.seek(self.offset)
        remaining = self.count
        while remaining:
            data = self.handle.read(min(READ_BYTES, remaining))  # page cache: microseconds
            if not data:
                raise OriginError("a cached slice is shorter than recorded")
            remaining -= len(data)
            yield data


class CachedBody:
    """What a cached response streams: slice by slice, from memory, disk or a fill."""

    def __init__(
        self,
        cache: Cache,
        store: ObjectStore,
        cached: Cached,
        byte_range: ByteRange | None,
        start: int,
        end: int,
    ) -> None:
        self.cache, self.store, self.cached = cache, store, cached
        self.meta = cached.meta
        self.range = byte_range
        self.start, self.end = start, end  # inclusive
        self._first: Source = None
        self._checked = False  # `_first` holds the first slice's source

    async def _source(self, index: int) -> Source:
        """Where slice `index` comes from: None for the memory tier, its slice file (open, and
        found intact) for the disk tier, else the fill that fetches it."""
        cached, tiers = self.cached, self.cache.tiers
        if cached.body is not None:
            tiers.hit(cached)
            return None
        handle = await tiers.open_slice_checked(cached, index)
        if handle is not None:
            tiers.hit(cached, index)
            return handle
        fill = self.cache.fill(self.store, cached.key, index, cached.meta.etag)
        fill.readers += 1
        return fill

    async def check_first(self) -> None:
        source = await self._source(self.start // self.cached.slice_bytes)
        self._first, self._checked = source, True
        if isinstance(source, Fill):
            meta = await source.head()
            if meta.etag != self.meta.etag or meta.size != self.meta.size:
                self.cache.tiers.drop(self.cached.key)
                raise VersionChanged("storage holds another version of the object")

    async def parts(self) -> AsyncGenerator[bytes | FilePart, None]:
        """The body in order: bytes (memory, fills) and ranges of open, checked slice files
        (disk hits), which a plain socket takes with sendfile(2). A FilePart's file is the
        receiver's to close."""
        cached, cache = self.cached, self.cache
        size = cached.slice_bytes
        first, last = self.start // size, self.end // size
        for index in range(first, last + 1):
            base, length = cached.slice_range(index)
            lo = max(self.start, base) - base
            hi = min(self.end + 1, base + length) - base
            if index == first and self._checked:
                source, self._first, self._checked = self._first, None, False
            else:
                source = await self._source(index)
            if index < last and cached.body is None:
                # Read ahead: the next slice is on its way while this one is sent.
                ahead = index + 1
                if cache.tiers.get(cached.key) is cached and ahead not in cached.slices:
                    cache.fill(self.store, cached.key, ahead, cached.meta.etag)
            if source is None:
                assert cached.body is not None
                cache.cache_bytes += hi - lo
                yield cached.body[lo:hi]
            elif isinstance(source, Fill):
                meta = await source.head()
                if meta.etag != self.meta.etag or meta.size != self.meta.size:
                    cache.tiers.drop(cached.key)
                    raise VersionChanged("the object changed while it was being sent")
                async for chunk in source.read(lo, hi - lo):
                    yield chunk
            else:
                cache.cache_bytes += hi - lo
                yield FilePart(source, lo, hi - lo)

    async def chunks(self) -> AsyncGenerator[bytes, None]:
        async with contextlib.aclosing(self.parts()) as parts:
            async for part in parts:
                if isinstance(part, FilePart):
                    with part.handle:
                        async for data in part.read():
                            yield data
                else:
                    yield part

    def arrived(self) -> None:
        return None  # slice files (sent by sendfile) and bytes still arriving

    def socket_body(self) -> SocketBody | None:
        return None

    async def release(self) -> None:
        """Close what `check_first` opened, when the body was never streamed."""
        if self._checked and self._first is not None and not isinstance(self._first, Fill):
            self._first.close()
        self._first, self._checked = None, False
