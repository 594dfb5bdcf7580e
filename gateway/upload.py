"""PUT: a signed upload, from a verified request to an object in storage.

The pipeline (`gateway/handler.py`) has verified the token, checked revocation and mapped the
path to a key before it hands a PUT here. Then, in order, and all before the body is read:

    headers vs the signed constraints (411/413/400/415) -> NoOverwrite: is the key free? (412)
    -> OneTime: claim the link fleet-wide (409 while another upload holds it) -> 100 Continue

and only then the body is streamed into storage (`ObjectStore.begin_upload`), counted against
the limits as it comes (413 past MaxBytes, 400 short of MinBytes), with `idle_timeout` between
chunks (408). Any failure aborts the upload in storage, so nothing half-written is ever visible;
a one-time link's claim is then given back so the client can retry. A success answers 201 with
the object's ETag; a one-time link is revoked through the revocation list, so a replay fails
everywhere with 403 `revoked`.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

from aiohttp import hdrs, web
from aiohttp.http import HttpVersion11
from aiohttp.http_exceptions import HttpProcessingError

from gateway import responses
from gateway.http.uploads import BodyPlan, Refusal, plan
from gateway.observability.access_log import AccessRecord
from gateway.revocation import Kind, Revocation
from gateway.storage import NotFound, ObjectStore, StorageError, StoredObject
from signer.verify import Verified

if TYPE_CHECKING:
    from gateway.handler import Gateway

log = logging.getLogger("gateway.upload")

CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"


class _Refused(Exception):
    def __init__(self, status: int, code: str) -> None:
        super().__init__(code)
        self.status, self.code = status, code


class Uploads:
    def __init__(self, gateway: Gateway) -> None:
        self.gw = gateway
        self.metrics = gateway.metrics
        self.max_upload_bytes = gateway.settings.max_upload_bytes
        self.idle_timeout = gateway.settings.idle_timeout
        self.skew = gateway.settings.clock_skew

    async def receive(
        self, request: web.Request, verified: Verified, key: str, record: AccessRecord
    ) -> web.StreamResponse:
        claims = verified.claims
        headers = request.headers
        body_plan = plan(
            claims,
            content_length=request.content_length,
            chunked="chunked" in headers.get(hdrs.TRANSFER_ENCODING, "").lower(),
            content_type=headers.get(hdrs.CONTENT_TYPE),
            content_encoding=headers.get(hdrs.CONTENT_ENCODING),
            max_upload_bytes=self.max_upload_bytes,
        )
        if isinstance(body_plan, Refusal):
            return _answer(record, body_plan.status, body_plan.code)
        store = self.gw.store
        try:
            if claims.no_overwrite and await _exists(store, key):
                return _answer(record, 412, "object_exists")
        except StorageError as exc:
            return self._storage_failure(exc, record)
        token = verified.token_id
        until = claims.expires + self.skew
        if claims.one_time:
            try:
                claimed = await self.gw.revocation_store.claim_once(token, until)
            except Exception as exc:  # any store failure: fail closed, never upload twice
                log.error("could not claim a one-time link: %s", type(exc).__name__)
                return _answer(record, 503, "revocation_store_unavailable")
            if not claimed:
                return _answer(record, 409, "token_in_use")
        stored: StoredObject | None = None
        self.metrics.uploads.inc()
        try:
            stored = await self._store(request, key, body_plan, claims.no_overwrite, record)
        except _Refused as exc:
            return _answer(record, exc.status, exc.code)
        except StorageError as exc:
            return self._storage_failure(exc, record)
        except (ConnectionError, HttpProcessingError):
            # The client went away or broke the framing: nobody is left to answer.
            return _answer(record, 400, "client_disconnected")
        finally:
            self.metrics.uploads.dec()
            self.metrics.received_bytes.inc(record.received)
            if claims.one_time and stored is None:
                await asyncio.shield(self._release(token))
        if claims.one_time:
            await self._revoke(Revocation(Kind.TOKEN, token, until))
        return _created(record, verified.path, stored)

    async def _store(
        self,
        request: web.Request,
        key: str,
        body_plan: BodyPlan,
        no_overwrite: bool,
        record: AccessRecord,
    ) -> StoredObject:
        if request.version >= HttpVersion11 and request.headers.get(hdrs.EXPECT, "").lower() == (
            "100-continue"
        ):
            await request.writer.write(CONTINUE)
            request.writer.output_size = 0  # the 100 is not part of the response
        sink = await self.gw.store.begin_upload(
            key, content_type=body_plan.content_type, no_overwrite=no_overwrite
        )
        try:
            async for chunk in self._body(request, body_plan, record):
                await sink.write(chunk)
            return await sink.complete()
        except BaseException:
            # Shielded: a cancelled handler (shutdown deadline) must still drop the parts.
            await asyncio.shield(sink.abort())
            raise

    async def _body(
        self, request: web.Request, body_plan: BodyPlan, record: AccessRecord
    ) -> AsyncIterator[bytes]:
        content = request.content
        while True:
            try:
                async with asyncio.timeout(self.idle_timeout):
                    chunk = await content.readany()
            except TimeoutError:
                raise _Refused(408, "body_timeout") from None
            if not chunk:
                break
            record.received += len(chunk)
            if record.received > body_plan.limit:
                raise _Refused(413, "too_large")
            yield chunk
        if body_plan.length is not None and record.received != body_plan.length:
            raise ConnectionResetError("the body ended before its Content-Length")
        if record.received < body_plan.minimum:
            raise _Refused(400, "too_small")

    async def _release(self, token: str) -> None:
        try:
            await self.gw.revocation_store.release(token)
        except Exception as exc:
            log.error(
                "could not release a one-time link's claim (%s): it stays unusable until it "
                "expires",
                type(exc).__name__,
            )

    async def _revoke(self, entry: Revocation) -> None:
        """Used: revoke it here at once and fleet-wide. The claim, kept until the link expires,
        already refuses a second use; the revocation makes every gateway say why."""
        self.gw.revocations.apply(entry)
        try:
            await self.gw.revocation_store.add(entry)
        except Exception as exc:
            log.error("could not record a used one-time link: %s", type(exc).__name__)

    def _storage_failure(self, exc: StorageError, record: AccessRecord) -> web.Response:
        self.metrics.storage_errors.labels(exc.kind).inc()
        if isinstance(exc, NotFound):
            # Only a local store says this on writes: a symlink in the way.
            return _answer(record, 400, "invalid_path")
        response, reason = responses.storage_failure(exc)
        record.status, record.reason = response.status, reason
        return response


async def defer_expect(request: web.Request) -> None:
    """The route's `Expect` handler: send no `100 Continue` up front (aiohttp's default would,
    before the handler runs). An upload sends it once every check has passed, so a refused
    client never sends its body; any other expectation is 417."""
    expect = request.headers.get(hdrs.EXPECT, "")
    if request.version >= HttpVersion11 and expect.lower() != "100-continue":
        raise web.HTTPExpectationFailed(
            body=b'{"error":"expectation_failed"}\n', content_type="application/json"
        )


async def close_if_body_unread(request: web.Request, response: web.StreamResponse) -> None:
    """A response sent before the request body was read closes the connection: the body that
    may still come must not be taken for the next request (RFC 9112 §9.3)."""
    if request.body_exists and not request.content.is_eof():
        response.force_close()  # the connection ends after this response...
        response.headers[hdrs.CONNECTION] = "close"  # ...and the client is told so


async def _exists(store: ObjectStore, key: str) -> bool:
    try:
        await store.head(key)
    except NotFound:
        return False
    return True


def _answer(record: AccessRecord, status: int, code: str) -> web.Response:
    record.status, record.reason = status, code
    return responses.error(status, code)


def _created(record: AccessRecord, path: str, stored: StoredObject) -> web.Response:
    body = {"path": path, "size": stored.size, "etag": stored.etag}
    response = web.Response(
        status=201,
        body=json.dumps(body, ensure_ascii=False).encode() + b"\n",
        content_type="application/json",
        headers={"Cache-Control": responses.NO_STORE},
    )
    if stored.etag:
        response.headers[hdrs.ETAG] = stored.etag
    record.status, record.reason = 201, "ok"
    return response
