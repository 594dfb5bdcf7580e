"""S3-compatible storage: aiobotocore for credentials and control calls, a lean pooled HTTP/1.1
client (`origin_http`) for the data path.

Why not `client.get_object` per request: botocore's per-request machinery (serialisation, event
hooks, response parsing) costs far more than everything else a request does here; measured, it
limits small-object throughput to about a tenth of the storage's own. So the hot path builds one
GET/HEAD by hand, signs it with the gateway's own SigV4 signer (`sigv4`, tested against
botocore's) using credentials that aiobotocore resolves and refreshes through the standard AWS
chain, and sends it over one long-lived connection pool created at start-up. A large body can
be handed over as its socket (`S3Body.socket_body`) for the zero-copy relay.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import re
from collections.abc import AsyncGenerator
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlsplit

from aiobotocore.config import AioConfig
from aiobotocore.session import get_session
from botocore.credentials import RefreshableCredentials
from botocore.exceptions import ClientError, EndpointConnectionError

from gateway.http.conditionals import parse_http_date
from gateway.http.ranges import ByteRange, RangeSpec
from gateway.storage import (
    NotFound,
    ObjectMeta,
    OriginError,
    OriginTimeout,
    RangeNotSatisfiable,
    SocketBody,
    StorageError,
    UploadRegistry,
)
from gateway.storage.origin_http import (
    ConnectionPool,
    OriginProtocolError,
    OriginResponse,
    is_digits,
)
from gateway.storage.s3_upload import S3Upload, abort_multipart
from gateway.storage.sigv4 import Credentials, SigV4Signer

if TYPE_CHECKING:
    from aiobotocore.credentials import AioCredentials
    from aiobotocore.session import ClientCreatorContext
    from types_aiobotocore_s3 import S3Client

# Every answer carries its object's Last-Modified; the same few values come back again and again.
_parse_last_modified = functools.lru_cache(maxsize=1024)(parse_http_date)
#: What HeadBucket's bare status codes mean to an operator.
_HEAD_BUCKET = {
    "403": "403 access denied: wrong AWS credentials, or no permission on the bucket",
    "404": "404 no such bucket (GATEWAY_ORIGIN)",
    "301": "301 the bucket is in another region (GATEWAY_S3_REGION)",
    "400": "400 bad request: often the wrong region (GATEWAY_S3_REGION)",
}


def _bucket_region(answer: Any) -> str | None:
    """The `x-amz-bucket-region` of a HeadBucket answer (AWS sends it, also with a 301)."""
    headers = answer.get("ResponseMetadata", {}).get("HTTPHeaders", {})
    region = headers.get("x-amz-bucket-region")
    return str(region) if region else None


@functools.lru_cache(maxsize=4096)
def _quoted(key: str) -> str:
    """A key as its request target spells it: hot keys are asked for again and again."""
    return quote(key, safe="/")


_CONTENT_RANGE = re.compile(r"bytes (\d+)-(\d+)/(\d+)")
_UNSATISFIED = re.compile(r"bytes \*/(\d+)")


if TYPE_CHECKING:
    from gateway.settings import Settings


class S3Store:
    def __init__(
        self,
        *,
        bucket: str,
        region: str,
        endpoint_url: str | None,
        connect_timeout: float,
        first_byte_timeout: float,
        idle_timeout: float,
        chunk_size: int,
        pool_size: int,
        upload_part_size: int = 8 * 1024 * 1024,
    ) -> None:
        self._bucket = bucket
        self._region = region
        self.bucket_region: str | None = None  # as the last HeadBucket (`check`) named it
        self._endpoint_url = endpoint_url
        self._connect_timeout = connect_timeout
        self._first_byte_timeout = first_byte_timeout
        self._idle_timeout = idle_timeout
        self._chunk_size = chunk_size
        self._pool_size = pool_size
        self._upload_part_size = upload_part_size
        if endpoint_url:
            self._base = f"{endpoint_url.rstrip('/')}/{quote(bucket, safe='')}/"
        else:
            self._base = f"https://{bucket}.s3.{region}.amazonaws.com/"
        base = urlsplit(self._base)
        self._host = base.netloc
        self._base_path = base.path
        self._origin = (base.hostname or "", base.port, base.scheme == "https")
        self._signer = SigV4Signer(region)
        self._http: ConnectionPool | None = None
        self._client: S3Client | None = None
        self._client_context: ClientCreatorContext[S3Client] | None = None
        self._credentials: AioCredentials | None = None
        # Credentials that cannot change (keys from the environment or a profile), read once;
        # None for refreshing ones (a role, web identity), which are asked on every request.
        self._fixed: Credentials | None = None

    async def start(self) -> None:
        session = get_session()
        self._credentials = await session.get_credentials()
        if self._credentials is None:
            raise StorageError(
                "no AWS credentials found (AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, "
                "AWS_PROFILE, web identity or instance role)"
            )
        if not isinstance(self._credentials, RefreshableCredentials):
            with contextlib.suppress(OriginError):  # unusable: each request says so
                self._fixed = await self._signing_credentials()
        config = AioConfig(
            connect_timeout=self._connect_timeout,
            read_timeout=self._first_byte_timeout,
            retries={"max_attempts": 2, "mode": "standard"},
            s3={"addressing_style": "path" if self._endpoint_url else "virtual"},
        )
        self._client_context = session.create_client(
            "s3", region_name=self._region, endpoint_url=self._endpoint_url, config=config
        )
        self._client = await self._client_context.__aenter__()
        host, port, tls = self._origin
        self._http = ConnectionPool(
            host,
            port or (443 if tls else 80),
            tls=tls,
            size=self._pool_size,
            connect_timeout=self._connect_timeout,
        )

    async def close(self) -> None:
        if self._http is not None:
            await self._http.close()
            self._http = None
        if self._client_context is not None:
            await self._client_context.__aexit__(None, None, None)
            self._client_context = None
            self._client = None

    async def check(self) -> None:
        if self._client is None:
            raise OriginError("the storage client is not started (or already closed)")
        try:
            answer = await asyncio.wait_for(
                self._client.head_bucket(Bucket=self._bucket), self._first_byte_timeout
            )
        except TimeoutError:
            raise OriginTimeout("storage did not answer HeadBucket in time") from None
        except ClientError as exc:
            code = str(exc.response.get("Error", {}).get("Code", ""))
            where = _bucket_region(exc.response)
            raise OriginError(
                f"HeadBucket failed: {_HEAD_BUCKET.get(code, code)}"
                + (f": it is in {where}" if where and where != self._region else "")
            ) from None
        except EndpointConnectionError:
            raise OriginError(
                "HeadBucket failed: cannot connect to the endpoint (GATEWAY_S3_ENDPOINT_URL)"
            ) from None
        except Exception as exc:
            raise OriginError(f"HeadBucket failed: {type(exc).__name__}") from None
        # botocore follows AWS's 301 to the bucket's region by itself, so a wrong region can
        # still answer 200 here: `gateway check` compares (readiness does not, since some
        # S3-compatible stores name a region they do not check).
        self.bucket_region = _bucket_region(answer)

    async def begin_upload(
        self,
        key: str,
        *,
        content_type: str,
        no_overwrite: bool,
        registry: UploadRegistry | None = None,
    ) -> S3Upload:
        """Uploads go through aiobotocore: they are few and large, so botocore's per-call cost
        is noise next to the bytes, and it handles multipart and retries of whole parts."""
        assert self._client is not None, "S3Store.start() was not awaited"
        return S3Upload(
            self._client,
            bucket=self._bucket,
            key=key,
            content_type=content_type,
            no_overwrite=no_overwrite,
            part_size=self._upload_part_size,
            registry=registry,
        )

    async def abort_abandoned(self, location: str, upload_id: str) -> bool:
        """`location` is `bucket/key`, as `S3Upload` lists it."""
        assert self._client is not None, "S3Store.start() was not awaited"
        bucket, _, key = location.partition("/")
        if bucket != self._bucket:
            return False
        await abort_multipart(self._client, bucket, key, upload_id)
        return True

    async def head(self, key: str) -> ObjectMeta:
        response = await self._send("HEAD", key, {})
        try:
            return _meta(response, None)
        finally:
            response.release()

    async def revalidate(self, key: str, etag: str) -> ObjectMeta | None:
        """A HEAD with `If-None-Match`: None when storage answers 304 (still this version)."""
        response = await self._send("HEAD", key, {"If-None-Match": etag}, ok=(200, 304))
        try:
            return None if response.status == 304 else _meta(response, None)
        finally:
            response.release()

    async def get(self, key: str, spec: RangeSpec | None) -> S3Body:
        headers = {"Range": spec.header()} if spec is not None else {}
        response = await self._send("GET", key, headers)
        try:
            byte_range = None
            if response.status == 206:
                byte_range = _content_range(response.headers.get("content-range"))
                _check_length(response, byte_range)
            meta = _meta(response, byte_range)
        except BaseException:
            response.close()
            raise
        return S3Body(self, response, meta, byte_range)

    async def _send(
        self, method: str, key: str, headers: dict[str, str], ok: tuple[int, ...] = (200, 206)
    ) -> OriginResponse:
        assert self._http is not None, "S3Store.start() was not awaited"
        target = self._base_path + _quoted(key)
        credentials = self._fixed or await self._signing_credentials()
        head = self._signer.request_head(method, self._host, target, credentials, headers)
        try:
            # No redirects are followed: a 3xx must not send us (and our client) elsewhere.
            response = await self._http.send(method, head, within=self._first_byte_timeout)
        except TimeoutError:
            raise OriginTimeout(
                f"no response from storage within {self._first_byte_timeout}s"
            ) from None
        except OriginProtocolError as exc:
            raise OriginError(f"storage connection failed: {exc}") from None
        if response.status in ok:
            return response
        status = response.status
        content_range = response.headers.get("content-range", "")
        response.release()
        if status == 404:
            raise NotFound(key)
        if status == 416:
            match = _UNSATISFIED.fullmatch(content_range)
            size = int(match.group(1)) if match else (await self.head(key)).size
            raise RangeNotSatisfiable(size)
        raise OriginError(f"storage answered {status}")

    async def _signing_credentials(self) -> Credentials:
        assert self._credentials is not None, "S3Store.start() was not awaited"
        frozen = await self._credentials.get_frozen_credentials()
        if frozen.access_key is None or frozen.secret_key is None:
            raise OriginError("the AWS credentials have no access key or secret key")
        return Credentials(frozen.access_key, frozen.secret_key, frozen.token)


class S3Body:
    """One open GET. The connection goes back to the pool only when the body was read whole."""

    __slots__ = ("_complete", "_expected", "_released", "_response", "_store", "meta", "range")

    def __init__(
        self,
        store: S3Store,
        response: OriginResponse,
        meta: ObjectMeta,
        byte_range: ByteRange | None,
    ) -> None:
        self._store = store
        self._response = response
        self.meta = meta
        self.range = byte_range
        self._expected = byte_range.length if byte_range else meta.size
        self._complete = False
        self._released = False

    async def chunks(self) -> AsyncGenerator[bytes, None]:
        response = self._response
        size = self._store._chunk_size
        received = 0
        idle = self._store._idle_timeout
        try:
            while response.unread:
                chunk = response.read_buffered(size) or await response.read_chunk(size, idle)
                received += len(chunk)
                yield chunk
        except TimeoutError:
            raise OriginTimeout(f"storage sent nothing for {idle}s mid-stream") from None
        except OriginProtocolError as exc:
            raise OriginError(f"storage stream broke: {exc}") from None
        if received != self._expected:
            raise OriginError(f"storage stream ended after {received} of {self._expected} bytes")
        self._complete = True

    def arrived(self) -> bytes | None:
        if self._complete:
            return None
        data = self._response.read_arrived()
        if data is None:
            return None
        if len(data) != self._expected:  # storage's framing disagrees with its Content-Length
            raise OriginError(f"storage sent {len(data)} of {self._expected} bytes")
        self._complete = True
        return data

    def socket_body(self) -> SocketBody | None:
        handed = self._response.lend_socket()
        if handed is None:
            return None
        received, fd, remaining = handed
        return SocketBody(received, fd, remaining, self._store._idle_timeout, self._read_elsewhere)

    def _read_elsewhere(self) -> None:
        self._response.socket_read_to_end()
        self._complete = True

    async def release(self) -> None:
        if self._released:
            return
        self._released = True
        if self._complete:
            self._response.release()
        else:
            self._response.close()


def _content_range(value: str | None) -> ByteRange:
    match = _CONTENT_RANGE.fullmatch(value or "")
    if not match:
        raise OriginError("storage sent 206 without a usable Content-Range")
    start, end, size = map(int, match.groups())
    return ByteRange(start, end, size)


def _check_length(response: OriginResponse, byte_range: ByteRange) -> None:
    """A 206 whose framing disagrees with its Content-Range would make us promise the client
    one length and send another."""
    length = response.headers.get("content-length")
    if length is not None and (not is_digits(length) or int(length) != byte_range.length):
        raise OriginError("storage's Content-Length disagrees with its Content-Range")


def _meta(response: OriginResponse, byte_range: ByteRange | None) -> ObjectMeta:
    get = response.headers.get  # keyed by lower-case name (origin_http)
    if byte_range is not None:
        size = byte_range.size
    else:
        length = get("content-length")
        if length is None or not is_digits(length):
            raise OriginError("storage sent no Content-Length")
        size = int(length)
    modified = get("last-modified")
    return ObjectMeta(
        size=size,
        etag=get("etag"),
        last_modified=_parse_last_modified(modified) if modified else None,
        content_type=get("content-type") or "application/octet-stream",
        content_encoding=get("content-encoding"),
        content_disposition=get("content-disposition"),
        content_language=get("content-language"),
        cache_control=get("cache-control"),
        expires=get("expires"),
    )


def from_settings(settings: Settings) -> S3Store:
    region = settings.s3.region
    assert region is not None  # settings refuse an s3 origin without one
    return S3Store(
        bucket=settings.origin.bucket,
        region=region,
        endpoint_url=settings.s3.endpoint_url,
        connect_timeout=settings.timeouts.connect,
        first_byte_timeout=settings.timeouts.first_byte,
        idle_timeout=settings.timeouts.idle,
        chunk_size=settings.chunk_size,
        pool_size=settings.s3.connections,
        upload_part_size=settings.uploads.part_size,
    )
