"""Object storage behind the gateway: a small protocol, with `s3.py` and `local.py` behind it.

    StorageError                base of everything a store raises
    ├── NotFound                the object does not exist              -> 404
    ├── RangeNotSatisfiable     the range starts past the end          -> 416 (carries the size)
    ├── AlreadyExists           a no-overwrite upload found the key    -> 412
    ├── InvalidObjectKey        the store cannot hold this key         -> 400
    ├── OriginError             storage refused, failed or broke       -> 502
    └── OriginTimeout           storage did not answer in time         -> 504

Stores speak in object keys (already mapped and checked by `gateway.storage.keys`), never in
request paths or tokens.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from gateway.http.ranges import ByteRange, RangeSpec

#: S3's multipart limits, which uploads are planned within (and the settings are checked
#: against): every part but the last is at least 5 MiB, and an upload has at most 10,000.
MIN_PART_SIZE = 5 * 1024 * 1024
MAX_PARTS = 10_000


class StorageError(Exception):
    """Base of storage failures. `kind` is a bounded label for metrics and logs."""

    kind = "error"


class NotFound(StorageError):
    kind = "not_found"


class RangeNotSatisfiable(StorageError):
    kind = "range_not_satisfiable"

    def __init__(self, size: int) -> None:
        super().__init__(f"range not satisfiable for size {size}")
        self.size = size


class AlreadyExists(StorageError):
    kind = "exists"


class InvalidObjectKey(StorageError):
    """A key the store cannot write (a local store: a symlink or a file where a directory
    must be)."""

    kind = "invalid_key"


class OriginError(StorageError):
    kind = "origin_error"


class OriginTimeout(StorageError):
    kind = "origin_timeout"


@dataclass(frozen=True, slots=True)
class ObjectMeta:
    """What the gateway passes on about an object (and nothing storage-internal)."""

    size: int
    etag: str | None
    last_modified: datetime | None
    content_type: str
    content_encoding: str | None = None
    content_disposition: str | None = None
    content_language: str | None = None
    # The object's own caching metadata (S3 stores them with the object): read by the edge
    # cache for freshness, never passed on (responses carry the gateway's Cache-Control).
    cache_control: str | None = None
    expires: str | None = None


@dataclass(frozen=True, slots=True)
class SocketBody:
    """The unread rest of a body, handed over as the plain TCP socket it arrives on, so that it
    can be moved to the client inside the kernel (`gateway.relay`) instead of through Python.

    `received` was already read and goes first; then exactly `remaining` bytes are to be read
    from `fd`, which is borrowed (the store owns and closes it). `finished()` is called once all
    of them were read; a body never finished is not reused. `idle_timeout` is the store's
    allowance of silence between bytes."""

    received: tuple[bytes, ...]
    fd: int
    remaining: int
    idle_timeout: float
    finished: Callable[[], None]


class ObjectBody(Protocol):
    """An open object read. `release()` must always be called; it is idempotent."""

    meta: ObjectMeta
    range: ByteRange | None

    def chunks(self) -> AsyncGenerator[bytes, None]: ...

    def arrived(self) -> bytes | None:
        """The whole body if it is at hand already (a small object comes with its head; a
        memory-tier hit), else None and nothing taken: then `chunks()` streams it."""
        ...

    def socket_body(self) -> SocketBody | None:
        """The body as a socket (see `SocketBody`), or None where there is no plain socket to
        hand over (TLS, local files). Once it returned a SocketBody, `chunks()` is not used."""
        ...

    async def release(self) -> None: ...


@dataclass(frozen=True, slots=True)
class StoredObject:
    """A finished upload: what the client is told."""

    size: int
    etag: str | None


class UploadSink(Protocol):
    """One upload in progress. Nothing is visible under the key until `complete()` returns;
    `abort()` (idempotent) removes every trace of it, and must be called if `complete()` was not
    reached or raised."""

    async def write(self, data: bytes) -> None: ...

    async def complete(self) -> StoredObject: ...

    async def abort(self) -> None: ...


class UploadRegistry(Protocol):
    """Where a store lists the uploads it leaves parts of in storage while they run (S3's
    multipart uploads), so that one a dead gateway abandoned can be found and aborted
    (`gateway.leases`). `location` is the store's own: it gets it back in `abort_abandoned`."""

    async def started(self, location: str, upload_id: str) -> None: ...

    async def ended(self, upload_id: str) -> None: ...


class ObjectStore(Protocol):
    async def head(self, key: str) -> ObjectMeta: ...

    async def get(self, key: str, spec: RangeSpec | None) -> ObjectBody: ...

    async def revalidate(self, key: str, etag: str) -> ObjectMeta | None:
        """Whether `etag` is still the object's version: None if so (a 304 from S3, no body
        moved), else the object's current metadata. Raises NotFound if it is gone."""
        ...

    async def begin_upload(
        self,
        key: str,
        *,
        content_type: str,
        no_overwrite: bool,
        registry: UploadRegistry | None = None,
    ) -> UploadSink:
        """Start writing `key`. With `no_overwrite`, `complete()` raises AlreadyExists rather
        than replace an object (atomically where the store supports conditional writes)."""
        ...

    async def abort_abandoned(self, location: str, upload_id: str) -> bool:
        """Abort an upload that `registry.started` listed and nobody finished. False when the
        location is not this store's (another bucket): leave it to a gateway of that bucket.
        Raise StorageError if storage failed (the next sweep tries again)."""
        ...

    async def start(self) -> None:
        """Open what the store needs (credentials, connection pools); raise StorageError with a
        message for the operator if it cannot work."""

    async def check(self) -> None:
        """Raise StorageError unless storage is reachable (for /readyz)."""

    async def close(self) -> None: ...
