"""PUT: a signed upload, from a verified request to an object in storage.

The pipeline (`gateway/handler.py`) has verified the token, checked revocation and mapped the
path to a key before it hands a PUT here. Then, in order, and all before the body is read:

    headers vs the signed constraints (411/413/400/415)
    -> NoOverwrite: claim the key fleet-wide (409 while another upload writes it), then is it
       free? (412)
    -> OneTime: claim the link fleet-wide (409 while another upload holds it) -> 100 Continue

and only then the body is streamed into storage (`ObjectStore.begin_upload`), counted against
the limits as it comes (413 past MaxBytes, 400 short of MinBytes), with `idle_timeout` between
chunks (408). Any failure aborts the upload in storage, so nothing half-written is ever visible;
a one-time link's claim is then given back so the client can retry. A success answers 201 with
the object's ETag; a one-time link keeps its claim until it expires and is revoked through the
revocation list, so a replay fails everywhere with 403 `revoked`.

Claims are leases (`gateway.leases`): renewed while the upload runs, they lapse soon after a
gateway that died mid-upload, and so does the listing of its multipart upload, which another
gateway's sweep then aborts.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
from collections.abc import AsyncIterator

from aiohttp import hdrs

from gateway.cache.purges import Purge, PurgeFailed, Target
from gateway.errors import NO_STORE, Outcome, Refusal, Refused
from gateway.http.upload_rules import BodyPlan, upload_plan
from gateway.http_server import Request, Response
from gateway.http_server.messages import HTTP_11
from gateway.leases import Leases
from gateway.observability.access_log import AccessRecord
from gateway.revocation import Kind, Revocation
from gateway.services import Services
from gateway.storage import NotFound, ObjectStore, StorageError, StoredObject
from signer.verify import Verified

log = logging.getLogger("gateway.uploads")


class Uploads:
    def __init__(self, services: Services) -> None:
        self.store = services.store
        self.cache = services.cache
        self.purges = services.purges
        self.claims = services.revocation_store
        self.revocations = services.revocations
        self.metrics = services.metrics
        self.max_upload_bytes = services.settings.uploads.max_bytes
        self.idle_timeout = services.settings.timeouts.idle
        self.skew = services.settings.links.clock_skew
        self.lease = services.settings.uploads.lease
        self.in_flight = services.in_flight

    async def put(
        self, request: Request, verified: Verified, key: str, record: AccessRecord
    ) -> Response:
        claims = verified.claims
        headers = request.headers
        body_plan = upload_plan(
            claims,
            content_length=request.content_length,
            chunked="chunked" in headers.get(hdrs.TRANSFER_ENCODING, "").lower(),
            content_type=headers.get(hdrs.CONTENT_TYPE),
            content_encodings=headers.getall(hdrs.CONTENT_ENCODING, ()),
            max_upload_bytes=self.max_upload_bytes,
        )
        if isinstance(body_plan, Refusal):
            raise Refused(body_plan)
        token, until = verified.token_id, claims.expires + self.skew
        leases = Leases(self.claims, self.lease)  # given back on the way out
        try:
            async with leases.renewed():
                if claims.no_overwrite:
                    # One no-overwrite upload per key at a time, fleet-wide: what storage's own
                    # conditional write guarantees only on some stores (docs/gateway.md).
                    await leases.claim(_object_lock(key), Refusal.UPLOAD_IN_PROGRESS)
                    if await _exists(self.store, key):
                        raise Refused(Refusal.OBJECT_EXISTS)
                if claims.one_time:
                    await leases.claim(token, Refusal.TOKEN_IN_USE)
                stored = await self.receive(
                    request,
                    key,
                    self._counted_chunks(request, body_plan, record),
                    content_type=body_plan.content_type,
                    no_overwrite=claims.no_overwrite,
                    leases=leases,
                    record=record,
                )
            if self.cache is not None:  # the next read, here and across the fleet, sees it
                with contextlib.suppress(PurgeFailed):  # dropped here; logged; others revalidate
                    await self.purges.purge(Purge(Target.KEY, verified.path))
            if claims.one_time:  # used: claimed until it expires, then revoked
                await leases.hold(token, until)
                await self._revoke(Revocation(Kind.TOKEN, token, until))
        finally:
            await asyncio.shield(leases.release())
        return _created(record, verified.path, stored)

    async def receive(
        self,
        request: Request,
        key: str,
        chunks: AsyncIterator[bytes],
        *,
        content_type: str,
        no_overwrite: bool,
        leases: Leases,
        record: AccessRecord,
    ) -> StoredObject:
        """Receive an accepted body (`chunks`, counted and judged by the caller: a PUT's body,
        a POST form's file) into storage, recording how the upload ended: the stored object,
        or a refusal saying why not."""
        self.metrics.uploads.inc()
        try:
            return await self._into_storage(
                request, key, chunks, content_type, no_overwrite, leases
            )
        except StorageError as exc:
            log.warning("upload failed in storage: %s", exc)
            raise
        except ConnectionError:
            # The client went away or broke the framing: nobody is left to answer.
            raise Refused(Refusal.CLIENT_DISCONNECTED) from None
        except asyncio.CancelledError:
            # The shutdown deadline cancels the handler (gateway.drain), and so may aiohttp when
            # the client goes away. The upload was aborted on the way out either way.
            gone = request.transport is None or request.transport.is_closing()
            refusal = (
                Refusal.SHUTDOWN
                if self.in_flight.cutting
                else Refusal.CLIENT_DISCONNECTED
                if gone
                else Refusal.CANCELLED
            )
            record.status, record.reason = refusal.status, refusal.code
            raise
        finally:
            self.metrics.uploads.dec()
            self.metrics.received_bytes.inc(record.received)

    async def _into_storage(
        self,
        request: Request,
        key: str,
        chunks: AsyncIterator[bytes],
        content_type: str,
        no_overwrite: bool,
        leases: Leases,
    ) -> StoredObject:
        """Send `100 Continue` if asked, then stream the body into an upload that is aborted
        (nothing left behind) unless it completes."""
        send_continue(request)
        sink = await self.store.begin_upload(
            key,
            content_type=content_type,
            no_overwrite=no_overwrite,
            registry=leases,
        )
        try:
            async for chunk in chunks:
                await sink.write(chunk)
            return await sink.complete()
        except BaseException:
            # Shielded: a cancelled handler (shutdown deadline) must still drop the parts.
            await asyncio.shield(sink.abort())
            raise

    async def _counted_chunks(
        self, request: Request, body_plan: BodyPlan, record: AccessRecord
    ) -> AsyncIterator[bytes]:
        content = request.content
        while True:
            try:
                async with asyncio.timeout(self.idle_timeout):
                    chunk = await content.readany()
            except TimeoutError:
                raise Refused(Refusal.BODY_TIMEOUT) from None
            if not chunk:
                break
            record.received += len(chunk)
            if record.received > body_plan.limit:
                raise Refused(Refusal.TOO_LARGE)
            yield chunk
        if body_plan.length is not None and record.received != body_plan.length:
            raise ConnectionResetError("the body ended before its Content-Length")
        if record.received < body_plan.minimum:
            raise Refused(Refusal.TOO_SMALL)

    async def _revoke(self, entry: Revocation) -> None:
        """Used: revoke it here at once and fleet-wide. The claim, kept until the link expires,
        already refuses a second use; the revocation makes every gateway say why."""
        self.revocations.apply(entry)
        try:
            await self.claims.add(entry)
        except Exception as exc:
            log.error("could not record a used one-time link: %s", type(exc).__name__)


def send_continue(request: Request) -> None:
    """Send `100 Continue` if the client asked for it, once per request (a POST form sends it
    before reading its fields, the upload then finds it sent). Never before every check has
    passed, so a refused client never sends its body."""
    if (
        request.version >= HTTP_11
        and request.headers.get(hdrs.EXPECT, "").lower() == "100-continue"
    ):
        request.send_continue()


def expectation_failed(request: Request) -> bool:
    """An HTTP/1.1 `Expect` other than `100-continue` (RFC 9110 §10.1.1: 417)."""
    expect = request.headers.get(hdrs.EXPECT)
    return expect is not None and request.version >= HTTP_11 and expect.lower() != "100-continue"


def _object_lock(key: str) -> str:
    """The claim name for writing `key`: its "object:" prefix means it is never a token id
    (`signer.is_token_id`)."""
    return "object:" + hashlib.sha256(key.encode()).hexdigest()[:32]


async def _exists(store: ObjectStore, key: str) -> bool:
    try:
        await store.head(key)
    except NotFound:
        return False
    return True


def _created(record: AccessRecord, path: str, stored: StoredObject) -> Response:
    body = {"path": path, "size": stored.size, "etag": stored.etag}
    response = Response(
        201,
        {"Content-Type": "application/json", "Cache-Control": NO_STORE},
        json.dumps(body, ensure_ascii=False).encode() + b"\n",
    )
    if stored.etag:
        response.headers[hdrs.ETAG] = stored.etag
    record.status, record.reason = 201, Outcome.OK
    return response
