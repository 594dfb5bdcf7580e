"""POST: an S3 presigned POST (a browser form upload with a policy), streamed into storage.

A form posted to the bucket's URL (`/<bucket>` or `/<bucket>/`, path-style) is read as it
arrives, never whole (aiohttp's multipart reader, not `request.post()`):

    the fields before the file (at most MAX_FIELDS, MAX_FIELD_BYTES in all: 400 past them)
    -> the policy's signature, key and time (`signer.schemes.sigv4_post`)  403
    -> the bucket is the origin's (403 wrong_bucket); `${filename}` in the key replaced
    -> every condition holds and names every field (403 policy_condition_failed)
    -> the object key, the revocation list (the pipeline's `admitted`, as for every link)
    -> the file part streamed into storage (`Uploads.receive`), its bytes counted against
       content-length-range and the gateway's bound (413 too_large at once, 400 too_small)

Any failure aborts the upload, so nothing half-written is visible. A success answers as S3
does: a 303 to `success_action_redirect` (with bucket, key and etag in its query), else
`success_action_status` 200 or 201 (with S3's XML) or 204 by default. Refusals keep the
gateway's JSON with S3's words in `detail`, like presigned URLs (`scheme_words`).
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Final, TypeVar
from urllib.parse import quote, urlencode, urlsplit, urlunsplit
from xml.sax.saxutils import escape

from aiohttp import BodyPartReader, MultipartReader, hdrs
from aiohttp.helpers import parse_mimetype

from gateway.cache.purges import Purge, PurgeFailed, Target
from gateway.client_address import forwarded_host
from gateway.errors import NO_STORE, Outcome, Refusal, Refused
from gateway.http.upload_rules import storable_type
from gateway.http_server import Request, Response
from gateway.leases import Leases
from gateway.observability.access_log import AccessRecord
from gateway.services import Services
from gateway.storage import StoredObject
from gateway.uploads import Uploads, send_continue
from signer import Reason, Rejected
from signer.addresses import IPAddress
from signer.schemes import sigv4_post
from signer.verify import Verified

#: Fields a form may have (the file and any after it included): S3 has no count, but a bound.
MAX_FIELDS: Final = 64
#: Bytes of field names and values before the file: S3's own bound (MaxPostPreDataLength).
MAX_FIELD_BYTES: Final = 20 * 1024
READ_SIZE: Final = 64 * 1024
FILE: Final = "file"
#: What a part may say of its encoding: the bytes sent are the bytes stored.
_IDENTITY: Final = frozenset({"", "binary", "8bit", "7bit"})
_BUCKET_PATH: Final = re.compile(r"/([a-z0-9][a-z0-9.\-_]{0,254})/?")
_STATUSES: Final = {"200": 200, "201": 201}

T = TypeVar("T")


class FormUploads:
    def __init__(
        self, services: Services, uploads: Uploads, bucket: str, admitted: Callable[[Verified], str]
    ) -> None:
        self.services = services
        self.uploads = uploads
        self.bucket = bucket
        self.admitted = admitted  # the pipeline's key mapping and revocation check
        self.max_upload_bytes = services.settings.uploads.max_bytes
        self.max_lifetime = services.settings.links.max_lifetime
        self.skew = services.settings.links.clock_skew
        self.idle_timeout = services.settings.timeouts.idle

    def accepts(self, raw_target: str) -> bool:
        """Whether a POST to `raw_target` can be a form upload here: to this gateway's bucket.
        A CORS preflight allows POST only there (`gateway.http.cors`)."""
        return form_bucket(raw_target) == self.bucket

    async def post(
        self, request: Request, record: AccessRecord, client: IPAddress | None
    ) -> Response:
        bucket = form_bucket(request.raw_path)
        if bucket is None:  # POST is a form upload to the bucket, nothing else
            raise Refused(Refusal.METHOD_NOT_ALLOWED)
        record.scheme = sigv4_post.NAME
        _check_framing(request)
        send_continue(request)
        reader = MultipartReader(request.headers, request.content)
        fields, file_part = await self._read(self._fields(reader))
        checked = sigv4_post.verify(
            self.services.keyring.current, fields, client_ip=client, skew=self.skew
        )
        claims = checked.claims
        record.key_id, record.token_id = claims.key_id, checked.token_id
        if claims.expires - claims.issued > self.max_lifetime:
            raise Rejected(Reason.LIFETIME_EXCEEDED, claims=claims)
        if bucket != self.bucket:
            raise Refused(Refusal.WRONG_BUCKET)
        if "key" not in fields:
            raise _invalid("the form has no key field")
        key = fields["key"].replace("${filename}", file_part.filename or "")
        unmet = checked.policy.unmet({**fields, "key": key, "bucket": bucket})
        if unmet is not None:
            words = f"{sigv4_post.WORDS[Refusal.POLICY_CONDITION_FAILED.code]}: {unmet}"
            raise Refused(Refusal.POLICY_CONDITION_FAILED, detail=words)
        content_type = storable_type(fields.get("content-type"))
        if content_type is None:
            raise Refused(Refusal.UNSUPPORTED_MEDIA_TYPE)
        verified = Verified(path="/" + key, claims=claims, token_id=checked.token_id)
        object_key = self.admitted(verified)
        minimum, signed_limit = checked.policy.length_range or (0, self.max_upload_bytes)
        limit = min(signed_limit, self.max_upload_bytes)
        leases = Leases(self.services.revocation_store, self.services.settings.uploads.lease)
        try:
            async with leases.renewed():
                stored = await self.uploads.receive(
                    request,
                    object_key,
                    self._file(reader, file_part, minimum, limit, record),
                    content_type=content_type,
                    no_overwrite=False,  # S3's POST replaces an object
                    leases=leases,
                    record=record,
                )
        finally:
            await asyncio.shield(leases.release())
        if self.services.cache is not None:  # as after a PUT: the next read sees it
            with contextlib.suppress(PurgeFailed):
                await self.services.purges.purge(Purge(Target.KEY, verified.path))
        response = self._answer(request, fields, bucket, key, stored)
        record.status, record.reason = response.status, Outcome.OK
        return response

    async def _fields(self, reader: MultipartReader) -> tuple[dict[str, str], BodyPartReader]:
        """The fields before the file (lower-case names), and the file part, unread."""
        fields: dict[str, str] = {}
        size = 0
        while True:
            part = await self._part(reader)
            if part is None:
                raise _invalid("the form has no file field")
            name = _name(part)
            if name == FILE:
                return fields, part
            if name in fields:
                raise _invalid(f"the field {name} is repeated")
            if not sigv4_post.readable(name):
                raise _invalid(f"the field {name} is not one the gateway honours")
            if len(fields) == MAX_FIELDS:
                raise Refused(Refusal.FORM_FIELDS_TOO_LARGE)
            size += len(name)
            value = bytearray()
            async for chunk in self._chunks(part):
                size += len(chunk)
                if size > MAX_FIELD_BYTES:
                    raise Refused(Refusal.FORM_FIELDS_TOO_LARGE)
                value += chunk
            try:
                fields[name] = value.decode("utf-8")
            except UnicodeDecodeError:
                raise _invalid(f"{name} is not UTF-8") from None

    async def _file(
        self,
        reader: MultipartReader,
        part: BodyPartReader,
        minimum: int,
        limit: int,
        record: AccessRecord,
    ) -> AsyncIterator[bytes]:
        """The file's bytes, counted as they come (413 once past `limit`, 400 short of
        `minimum`), then the rest of the form read (S3 ignores fields after the file) before
        the upload may complete."""
        async for chunk in self._read_chunks(part):
            record.received += len(chunk)
            if record.received > limit:
                raise Refused(Refusal.TOO_LARGE)
            yield chunk
        if record.received < minimum:
            raise Refused(Refusal.TOO_SMALL)
        after = 0
        while (extra := await self._read(self._part(reader))) is not None:
            _name(extra)
            async for chunk in self._read_chunks(extra):
                after += len(chunk)
                if after > MAX_FIELD_BYTES:
                    raise Refused(Refusal.FORM_FIELDS_TOO_LARGE)

    async def _part(self, reader: MultipartReader) -> BodyPartReader | None:
        async with asyncio.timeout(self.idle_timeout):
            part = await reader.next()
        if isinstance(part, MultipartReader):
            raise _invalid("a nested multipart part")
        return part

    async def _chunks(self, part: BodyPartReader) -> AsyncIterator[bytes]:
        """A part's bytes as sent, each read within the idle timeout."""
        encoding = part.headers.get(hdrs.CONTENT_TRANSFER_ENCODING, "").strip().lower()
        if encoding not in _IDENTITY or hdrs.CONTENT_ENCODING in part.headers:
            raise Refused(Refusal.UNSUPPORTED_CONTENT_ENCODING)
        while True:
            async with asyncio.timeout(self.idle_timeout):
                chunk = await part.read_chunk(READ_SIZE)
            if not chunk:
                return
            yield chunk

    async def _read_chunks(self, part: BodyPartReader) -> AsyncIterator[bytes]:
        """`_chunks`, with the reader's and the clock's failures as refusals."""
        chunks = self._chunks(part)
        while True:
            chunk = await self._read(anext(chunks, b""))
            if not chunk:
                return
            yield chunk

    async def _read(self, step: Awaitable[T]) -> T:
        """Await one step of reading the form: a form aiohttp cannot parse is invalid_form,
        silence past the idle timeout body_timeout, a body cut off (the client gone, or its
        chunked framing broken) client_disconnected."""
        try:
            return await step
        except TimeoutError:
            raise Refused(Refusal.BODY_TIMEOUT) from None
        except ConnectionError:
            raise Refused(Refusal.CLIENT_DISCONNECTED) from None
        except ValueError as exc:  # aiohttp's multipart parser: the form is broken
            raise _invalid(str(exc)[:200]) from None

    def _answer(
        self,
        request: Request,
        fields: dict[str, str],
        bucket: str,
        key: str,
        stored: StoredObject,
    ) -> Response:
        """S3's answer to a POST that stored the file."""
        etag = stored.etag or ""
        headers = {"Cache-Control": NO_STORE}
        if etag:
            headers[hdrs.ETAG] = etag
        redirect = _redirect(
            fields.get("success_action_redirect") or fields.get("redirect"),
            {"bucket": bucket, "key": key, "etag": etag},
        )
        if redirect is not None:
            return Response(303, {**headers, hdrs.LOCATION: redirect})
        location = f"{request.scheme}://{self._host(request)}/{bucket}/{quote(key, safe='/')}"
        headers[hdrs.LOCATION] = location
        status = _STATUSES.get(fields.get("success_action_status", ""), 204)
        if status != 201:
            return Response(status, headers)
        xml = (
            '<?xml version="1.0" encoding="UTF-8"?>\n'
            f"<PostResponse><Location>{escape(location)}</Location>"
            f"<Bucket>{escape(bucket)}</Bucket><Key>{escape(key)}</Key>"
            f"<ETag>{escape(etag)}</ETag></PostResponse>"
        )
        return Response(201, headers, xml.encode(), content_type="application/xml")

    def _host(self, request: Request) -> str:
        headers = request.headers
        host = forwarded_host(
            request.peer,
            headers.get(hdrs.HOST),
            lambda name: headers.getall(name, []),
            self.services.proxies,
        )
        return host or request.host


def form_bucket(raw_target: str) -> str | None:
    """The bucket a POST to `raw_target` posts a form to (`/<bucket>` or `/<bucket>/`, with no
    query), or None: a POST anywhere else is no S3 form upload."""
    raw_path, _, raw_query = raw_target.partition("?")
    match = _BUCKET_PATH.fullmatch(raw_path)
    return None if match is None or raw_query else match[1]


def _check_framing(request: Request) -> None:
    """What the request's own headers must say before its body is read."""
    if not request.body_exists:
        raise Refused(Refusal.LENGTH_REQUIRED)
    mime = parse_mimetype(request.headers.get(hdrs.CONTENT_TYPE, ""))
    if (mime.type, mime.subtype) != ("multipart", "form-data") or not mime.parameters.get(
        "boundary"
    ):
        raise _invalid("the body must be multipart/form-data")
    encodings = request.headers.getall(hdrs.CONTENT_ENCODING, ())
    if any(e.strip().lower() not in ("", "identity") for e in encodings):
        raise Refused(Refusal.UNSUPPORTED_CONTENT_ENCODING)


def _name(part: BodyPartReader) -> str:
    name = sigv4_post.field_name(part.name or "")
    if name is None:
        raise _invalid("a part without a usable field name")
    return name


def _invalid(detail: str) -> Refused:
    """invalid_form, in S3's words and then the gateway's."""
    words = sigv4_post.WORDS[Refusal.INVALID_FORM.code]
    return Refused(Refusal.INVALID_FORM, detail=f"{words} ({detail})")


def _redirect(target: str | None, query: dict[str, str]) -> str | None:
    """`success_action_redirect` with S3's query added, or None when it is not an http(s) URL
    (S3 then answers with the status, as without one)."""
    if not target:
        return None
    parts = urlsplit(target)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        return None
    added = urlencode(query)
    return urlunsplit(parts._replace(query=f"{parts.query}&{added}" if parts.query else added))
