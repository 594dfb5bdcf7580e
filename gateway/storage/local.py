"""A directory as an object store: the embedded default for trying the gateway out.

Same semantics as S3 where the gateway can see them (sizes, ranges, validators, 404s), so the
README's demo behaves like production. Filesystem calls run in the default thread pool
(`asyncio.to_thread`) so they never block the event loop; not meant for heavy traffic.

Uploads are written to a hidden temporary file in the object's directory and renamed into place
once complete (atomic on POSIX), so a reader sees the old object or the new one, never half of
one. No-overwrite uploads are linked into place instead (`link(2)` fails if the name exists), so
two racing uploads cannot both win.
"""

from __future__ import annotations

import asyncio
import contextlib
import mimetypes
import os
import tempfile
from collections.abc import AsyncGenerator
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

from gateway.http.ranges import ByteRange, RangeSpec
from gateway.storage import (
    AlreadyExists,
    InvalidObjectKey,
    NotFound,
    ObjectMeta,
    OriginError,
    RangeNotSatisfiable,
    StoredObject,
    UploadRegistry,
)

if TYPE_CHECKING:
    from gateway.settings import Settings


class LocalStore:
    def __init__(self, root: Path, *, chunk_size: int) -> None:
        self._root = root
        self._real_root = os.path.realpath(root)
        self._chunk_size = chunk_size

    async def start(self) -> None:
        await self.check()

    async def close(self) -> None:
        return None

    async def check(self) -> None:
        if not await asyncio.to_thread(os.path.isdir, self._real_root):
            raise OriginError(f"origin directory {self._root} does not exist")

    async def head(self, key: str) -> ObjectMeta:
        return await asyncio.to_thread(self._head, key)

    async def revalidate(self, key: str, etag: str) -> ObjectMeta | None:
        meta = await self.head(key)
        return None if meta.etag == etag else meta

    async def get(self, key: str, spec: RangeSpec | None) -> LocalBody:
        handle, meta, byte_range = await asyncio.to_thread(self._open, key, spec)
        return LocalBody(self, handle, meta, byte_range)

    async def begin_upload(
        self,
        key: str,
        *,
        content_type: str,
        no_overwrite: bool,
        registry: UploadRegistry | None = None,
    ) -> LocalUpload:
        """`content_type` is not kept: a directory stores none (types come from the name).
        Nothing is registered: the temporary file is the only trace of an upload."""
        creating = asyncio.ensure_future(asyncio.to_thread(self._create_temporary, key))
        try:
            final, fd, temporary = await asyncio.shield(creating)
        except asyncio.CancelledError:
            # Cancelled (the shutdown deadline) while the thread makes the file: it makes it
            # anyway, and nobody holds an upload to abort, so remove it here.
            with contextlib.suppress(Exception):
                final, fd, temporary = await creating
                await LocalUpload(final, fd, temporary, no_overwrite=no_overwrite).abort()
            raise
        return LocalUpload(final, fd, temporary, no_overwrite=no_overwrite)

    async def abort_abandoned(self, location: str, upload_id: str) -> bool:
        return False  # registers nothing, so never asked about its own

    def _create_temporary(self, key: str) -> tuple[str, int, str]:
        try:
            final = self._resolve(key)
        except NotFound:
            raise InvalidObjectKey(key) from None  # a symlink on the way
        directory, name = os.path.split(final)
        try:
            os.makedirs(directory, exist_ok=True)
            if os.path.realpath(directory) != directory:
                raise InvalidObjectKey(key)  # a symlink appeared on the way, as in `_resolve`
            fd, temporary = tempfile.mkstemp(prefix=f".{name}.", suffix=".upload", dir=directory)
        except OSError as exc:
            raise OriginError(f"cannot create an upload file: {exc.strerror}") from None
        return final, fd, temporary

    def _resolve(self, key: str) -> str:
        """No symlinks below the root: one could lead a Prefix token into another directory."""
        plain = os.path.normpath(os.path.join(self._real_root, key))
        if os.path.realpath(plain) != plain or not plain.startswith(self._real_root + os.sep):
            raise NotFound(key)
        return plain

    def _head(self, key: str) -> ObjectMeta:
        path = self._resolve(key)
        try:
            result = os.stat(path)
        except (FileNotFoundError, NotADirectoryError):
            raise NotFound(key) from None
        except OSError as exc:
            raise OriginError(f"cannot stat object: {exc.strerror}") from None
        if not os.path.isfile(path):
            raise NotFound(key)
        return _meta(path, result)

    def _open(
        self, key: str, spec: RangeSpec | None
    ) -> tuple[BinaryIO, ObjectMeta, ByteRange | None]:
        path = self._resolve(key)
        try:
            handle = open(path, "rb")  # noqa: SIM115 (closed by LocalBody.release)
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            raise NotFound(key) from None
        except OSError as exc:
            raise OriginError(f"cannot open object: {exc.strerror}") from None
        try:
            meta = _meta(path, os.fstat(handle.fileno()))
            byte_range = None
            if spec is not None:
                byte_range = spec.resolve(meta.size)
                if byte_range is None:
                    raise RangeNotSatisfiable(meta.size)
                handle.seek(byte_range.start)
        except BaseException:
            handle.close()
            raise
        return handle, meta, byte_range


class LocalBody:
    def __init__(
        self, store: LocalStore, handle: BinaryIO, meta: ObjectMeta, byte_range: ByteRange | None
    ) -> None:
        self._store = store
        self._handle = handle
        self.meta = meta
        self.range = byte_range
        self._remaining = byte_range.length if byte_range else meta.size
        self._released = False

    async def chunks(self) -> AsyncGenerator[bytes, None]:
        while self._remaining > 0:
            size = min(self._store._chunk_size, self._remaining)
            chunk = await asyncio.to_thread(self._handle.read, size)
            if not chunk:
                raise OriginError("object shrank while being read")
            self._remaining -= len(chunk)
            yield chunk

    def arrived(self) -> None:
        return None  # read from its file in a thread, as it streams

    def socket_body(self) -> None:
        return None  # a file, not a socket (and the demo store needs no zero-copy path)

    async def release(self) -> None:
        if not self._released:
            self._released = True
            self._handle.close()


class LocalUpload:
    """Writes are gathered into blocks so that each thread hop carries a useful amount."""

    BLOCK = 1024 * 1024

    def __init__(self, final: str, fd: int, temporary: str, *, no_overwrite: bool) -> None:
        self._final = final
        self._fd: int | None = fd
        self._temporary = temporary
        self._no_overwrite = no_overwrite
        self._pending = bytearray()
        self._finished = False
        self.size = 0

    async def write(self, data: bytes) -> None:
        self._pending += data
        self.size += len(data)
        if len(self._pending) >= self.BLOCK:
            block, self._pending = bytes(self._pending), bytearray()
            await asyncio.to_thread(self._write_all, block)

    async def complete(self) -> StoredObject:
        block, self._pending = bytes(self._pending), bytearray()
        meta = await asyncio.to_thread(self._finish, block)
        self._finished = True
        return StoredObject(size=meta.size, etag=meta.etag)

    async def abort(self) -> None:
        if not self._finished:
            self._finished = True
            await asyncio.to_thread(self._discard)

    def _write_all(self, block: bytes) -> None:
        assert self._fd is not None
        view = memoryview(block)
        try:
            while view:
                view = view[os.write(self._fd, view) :]
        except OSError as exc:
            raise OriginError(f"cannot write the upload: {exc.strerror}") from None

    def _finish(self, block: bytes) -> ObjectMeta:
        assert self._fd is not None
        self._write_all(block)
        try:
            os.fsync(self._fd)
            os.close(self._fd)
            self._fd = None
            if self._no_overwrite:
                os.link(self._temporary, self._final)  # fails if the name exists: atomic
                os.unlink(self._temporary)
            else:
                os.replace(self._temporary, self._final)
            return _meta(self._final, os.stat(self._final))
        except FileExistsError:
            self._discard()
            raise AlreadyExists("the object exists") from None
        except OSError as exc:
            self._discard()
            raise OriginError(f"cannot store the upload: {exc.strerror}") from None

    def _discard(self) -> None:
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.close(self._fd)
            self._fd = None
        with contextlib.suppress(OSError):
            os.unlink(self._temporary)


_COMPRESSED = {"gzip": "application/gzip", "bzip2": "application/x-bzip2", "xz": "application/x-xz"}


def _meta(path: str, result: os.stat_result) -> ObjectMeta:
    content_type, encoding = mimetypes.guess_type(path)
    if encoding is not None:
        # `x.tar.gz` is served as the compressed bytes it is, never with Content-Encoding
        # (which would make clients unpack it), as an S3 upload without metadata would be.
        content_type = _COMPRESSED.get(encoding, "application/octet-stream")
    return ObjectMeta(
        size=result.st_size,
        etag=f'"{result.st_size:x}-{result.st_mtime_ns:x}"',
        last_modified=datetime.fromtimestamp(int(result.st_mtime), tz=UTC),
        content_type=content_type or "application/octet-stream",
    )


def from_settings(settings: Settings) -> LocalStore:
    root = settings.origin.path
    assert root is not None  # a file:// origin always has one
    return LocalStore(root, chunk_size=settings.chunk_size)
