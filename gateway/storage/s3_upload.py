"""One upload into S3: a single PutObject when the body fits in one part, else a multipart upload.

The body arrives in small chunks and is gathered into parts of `part_size` bytes. While one
part is on its way to storage the next one is being received, so memory stays at about two
parts per upload whatever the object size, and the client's and storage's connections both
stay busy. Nothing is visible under the key until CompleteMultipartUpload (or the single
PutObject) returns; `abort()` cancels the part in flight and calls AbortMultipartUpload, so an
abandoned upload leaves no object and no parts behind. A multipart upload is listed in the
`registry` from CreateMultipartUpload until it completed or was aborted, so that the parts of a
gateway killed meanwhile are aborted by another (`gateway.leases.sweep_abandoned`).

No-overwrite uploads send `If-None-Match: *` with the request that makes the object visible
(PutObject or CompleteMultipartUpload): storage refuses atomically (412) if the key exists by
then. Stores that ignore the header simply overwrite; see docs/gateway.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable
from typing import TYPE_CHECKING, TypedDict, TypeVar

import aiohttp
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectTimeoutError,
    ReadTimeoutError,
)

from gateway.storage import (
    MAX_PARTS,
    AlreadyExists,
    OriginError,
    OriginTimeout,
    StoredObject,
    UploadRegistry,
)

if TYPE_CHECKING:
    from types_aiobotocore_s3 import S3Client
    from types_aiobotocore_s3.type_defs import CompletedPartTypeDef

log = logging.getLogger("gateway.storage")

T = TypeVar("T")


class _Conditions(TypedDict, total=False):
    """The conditional-write parameters of the call that makes the object visible."""

    IfNoneMatch: str


class S3Upload:
    def __init__(
        self,
        client: S3Client,
        *,
        bucket: str,
        key: str,
        content_type: str,
        no_overwrite: bool,
        part_size: int,
        registry: UploadRegistry | None = None,
    ) -> None:
        self._client = client
        self._registry = registry
        self._bucket = bucket
        self._key = key
        self._content_type = content_type
        self._conditions: _Conditions = {"IfNoneMatch": "*"} if no_overwrite else {}
        self._part_size = part_size
        self._buffer = bytearray()
        self._upload_id: str | None = None
        self._parts: list[CompletedPartTypeDef] = []
        self._in_flight: asyncio.Task[None] | None = None
        self._done = False
        self.size = 0

    async def write(self, data: bytes) -> None:
        self._buffer += data
        self.size += len(data)
        if len(self._buffer) >= self._part_size:
            await self._send_part()

    async def complete(self) -> StoredObject:
        if self._upload_id is None:
            body, self._buffer = bytes(self._buffer), bytearray()
            stored = await _call(
                self._client.put_object(
                    Bucket=self._bucket,
                    Key=self._key,
                    Body=body,
                    ContentType=self._content_type,
                    **self._conditions,
                ),
                "PutObject",
            )
            etag = stored.get("ETag")
        else:
            if self._buffer:
                await self._send_part()
            await self._settle()
            completed = await _call(
                self._client.complete_multipart_upload(
                    Bucket=self._bucket,
                    Key=self._key,
                    UploadId=self._upload_id,
                    MultipartUpload={"Parts": self._parts},
                    **self._conditions,
                ),
                "CompleteMultipartUpload",
            )
            etag = completed.get("ETag")
            await self._unlist()
        self._done = True
        return StoredObject(size=self.size, etag=etag)

    async def abort(self) -> None:
        """Cancel the part in flight and drop every part stored so far. Never raises: a failure
        is logged (a bucket lifecycle rule for incomplete uploads is the backstop)."""
        if self._done:
            return
        self._done = True
        self._buffer = bytearray()
        if self._in_flight is not None:
            self._in_flight.cancel()
            with contextlib.suppress(BaseException):
                await self._in_flight
            self._in_flight = None
        if self._upload_id is None:
            return
        try:
            await abort_multipart(self._client, self._bucket, self._key, self._upload_id)
        except (OriginError, OriginTimeout) as exc:
            log.error(
                "could not abort a multipart upload (%s); a gateway's sweep of abandoned "
                "uploads retries once this one stops renewing its lease",
                exc,
            )
        else:
            await self._unlist()

    async def _unlist(self) -> None:
        """Off the registry: done with. Never raises: a stale entry is only aborted again
        by a sweep (NoSuchUpload: done) once its lease lapses."""
        if self._registry is None or self._upload_id is None:
            return
        try:
            await self._registry.ended(self._upload_id)
        except Exception as exc:
            log.warning("could not unlist a finished multipart upload: %s", type(exc).__name__)

    async def _send_part(self) -> None:
        if self._upload_id is None:
            reply = await _call(
                self._client.create_multipart_upload(
                    Bucket=self._bucket, Key=self._key, ContentType=self._content_type
                ),
                "CreateMultipartUpload",
            )
            self._upload_id = reply["UploadId"]
            if self._registry is not None:
                # Listed before its first part: a gateway killed from now on leaves parts that
                # another finds. If the listing fails, so does the upload (and it is aborted).
                await self._registry.started(f"{self._bucket}/{self._key}", self._upload_id)
        await self._settle()
        number = len(self._parts) + 1
        if number > MAX_PARTS:
            raise OriginError(f"more than {MAX_PARTS} parts: raise upload_part_size")
        part, self._buffer = bytes(self._buffer), bytearray()
        self._in_flight = asyncio.create_task(self._upload_part(self._upload_id, number, part))

    async def _upload_part(self, upload_id: str, number: int, body: bytes) -> None:
        reply = await _call(
            self._client.upload_part(
                Bucket=self._bucket,
                Key=self._key,
                UploadId=upload_id,
                PartNumber=number,
                Body=body,
            ),
            "UploadPart",
        )
        self._parts.append({"PartNumber": number, "ETag": reply["ETag"]})

    async def _settle(self) -> None:
        """Wait for the part in flight; its failure is this upload's failure."""
        if self._in_flight is not None:
            task, self._in_flight = self._in_flight, None
            await task


async def abort_multipart(client: S3Client, bucket: str, key: str, upload_id: str) -> None:
    """AbortMultipartUpload; an upload that no longer exists (aborted already, completed, or
    removed by a lifecycle rule) counts as aborted."""
    try:
        await _call(
            client.abort_multipart_upload(Bucket=bucket, Key=key, UploadId=upload_id),
            "AbortMultipartUpload",
        )
    except _NoSuchUpload:
        return


class _NoSuchUpload(OriginError):
    kind = "no_such_upload"


async def _call(call: Awaitable[T], operation: str) -> T:
    """A botocore call with its failures as storage errors (kinds for metrics, short text)."""
    try:
        return await call
    except ClientError as exc:
        error = exc.response.get("Error", {})
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        code = error.get("Code")
        if code in ("PreconditionFailed", "ConditionalRequestConflict") or status == 412:
            raise AlreadyExists(f"{operation}: the object exists") from None
        if code == "NoSuchUpload":
            raise _NoSuchUpload(f"{operation}: no such upload") from None
        raise OriginError(f"{operation} failed: {code or status}") from None
    except (ReadTimeoutError, ConnectTimeoutError, TimeoutError):
        raise OriginTimeout(f"{operation}: storage did not answer in time") from None
    except (BotoCoreError, aiohttp.ClientError, OSError) as exc:
        raise OriginError(f"{operation} failed: {type(exc).__name__}") from None
