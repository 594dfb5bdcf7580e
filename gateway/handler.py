"""The request pipeline, visible in one place:

    client address -> locate token -> verify token -> object key -> storage
        -> conditionals/range -> stream

The token may travel in the query, the path or a cookie (`token_source`); all three end in the
one `verify` call below. Nothing touches storage before the token is verified. Every exit goes
through `_finish`, which records the outcome once for metrics and the access log.
A PUT takes the same path up to the object key, then goes to `gateway/upload.py`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass

from aiohttp import web
from aiohttp.abc import AbstractStreamWriter

from gateway import relay, responses
from gateway.client_address import client_address
from gateway.cookies import CookieIssuer
from gateway.http.conditionals import (
    Outcome,
    Validators,
    evaluate,
    format_http_date,
    if_range_allows,
)
from gateway.http.cors import is_preflight
from gateway.http.ranges import parse_range
from gateway.keyring import KeyringHolder
from gateway.observability.access_log import AccessRecord
from gateway.observability.access_log import log as access_log
from gateway.observability.metrics import Metrics
from gateway.revocation import RevocationStore, RevocationView
from gateway.settings import Settings
from gateway.storage import ObjectBody, ObjectMeta, ObjectStore, RangeNotSatisfiable, StorageError
from gateway.storage.keys import InvalidKey, object_key
from gateway.token_source import locate
from gateway.upload import Uploads
from signer import Reason, Rejected, verify
from signer.format import Claims, IPAddress, strip_path_token

log = logging.getLogger("gateway.handler")

METHODS = ("GET", "HEAD", "PUT")
ALLOWED = ", ".join(METHODS)


@dataclass(frozen=True)
class Gateway:
    """Everything a request needs, built once at start-up."""

    settings: Settings
    keyring: KeyringHolder
    store: ObjectStore
    metrics: Metrics
    revocations: RevocationView
    revocation_store: RevocationStore


class Pipeline:
    def __init__(self, gateway: Gateway) -> None:
        self.gw = gateway
        self.settings = gateway.settings
        self.metrics = gateway.metrics
        self.prefix = gateway.settings.origin.prefix
        self.max_lifetime = gateway.settings.max_link_lifetime
        self.revocations = gateway.revocations
        self.cors = gateway.settings.cors
        self.cookies = CookieIssuer(gateway.settings)
        self.uploads = Uploads(gateway)
        self.zero_copy = gateway.settings.zero_copy and relay.AVAILABLE

    async def __call__(self, request: web.Request) -> web.StreamResponse:
        method = request.method
        raw_path, _, raw_query = request.raw_path.partition("?")
        peer = request.transport.get_extra_info("peername") if request.transport else None
        proxies = self.settings.proxies
        client = client_address(
            peer[0] if peer else None, request.headers.getall(proxies.header, ()), proxies
        )
        record = AccessRecord(method, strip_path_token(raw_path), str(client) if client else None)
        try:
            return await self._serve(request, method, raw_path, raw_query, client, record)
        finally:
            self._finish(record)

    async def _serve(
        self,
        request: web.Request,
        method: str,
        raw_path: str,
        raw_query: str,
        client: IPAddress | None,
        record: AccessRecord,
    ) -> web.StreamResponse:
        if is_preflight(method, request.headers):
            allowed = self.cors.preflight(request.headers)
            if allowed is None:
                return _answer(record, responses.cors_refused(), "cors_refused")
            return _answer(record, web.Response(status=204, headers=allowed), "preflight")
        if method not in METHODS:
            return _answer(record, responses.method_not_allowed(ALLOWED), "method_not_allowed")
        try:
            presented = locate(raw_path, raw_query, request.headers.getall("Cookie", ()))
            verified = verify(
                self.gw.keyring.current,
                method=method,
                raw_path=presented.raw_path,
                raw_query=presented.raw_query,
                client_ip=client,
                skew=self.settings.clock_skew,
            )
        except Rejected as exc:
            if exc.claims is not None:
                record.key_id, record.sub = exc.claims.key_id, exc.claims.sub
            return _answer(record, responses.rejected(exc.reason), exc.reason.value)
        claims = verified.claims
        record.key_id, record.sub, record.token_id = claims.key_id, claims.sub, verified.token_id
        if claims.expires - claims.issued > self.max_lifetime:
            return _answer(record, responses.lifetime_exceeded(), "lifetime_exceeded")
        if self.revocations.revoked(claims, verified.token_id, verified.path) is not None:
            return _answer(record, responses.rejected(Reason.REVOKED), Reason.REVOKED.value)
        try:
            key = object_key(verified.path, self.prefix)
        except InvalidKey:
            return _answer(record, responses.invalid_path(), "invalid_path")
        if method == "PUT":
            return await self.uploads.receive(request, verified, key, record)
        extra = _granted_headers(claims, self.cookies.set_cookie(request, presented, claims))
        try:
            if method == "HEAD":
                return await self._head(request, key, record, extra)
            return await self._get(request, key, record, extra)
        except StorageError as exc:
            self.metrics.storage_errors.labels(exc.kind).inc()
            response, reason = responses.storage_failure(exc)
            return _answer(record, response, reason)

    async def _head(
        self, request: web.Request, key: str, record: AccessRecord, extra: dict[str, str]
    ) -> web.Response:
        meta = await self.gw.store.head(key)
        early = self._preconditions(request, meta, record, extra)
        if early is not None:
            return early
        spec = parse_range(request.headers.get("Range"))
        status, headers = 200, self._headers(meta, extra)
        if spec is not None and if_range_allows(request.headers.get("If-Range"), _validators(meta)):
            byte_range = spec.resolve(meta.size)
            if byte_range is None:
                raise RangeNotSatisfiable(meta.size)
            status = 206
            headers["Content-Range"] = byte_range.content_range()
            headers["Content-Length"] = str(byte_range.length)
        response = web.Response(status=status, headers=headers)
        return _answer(record, response, "ok")

    async def _get(
        self, request: web.Request, key: str, record: AccessRecord, extra: dict[str, str]
    ) -> web.StreamResponse:
        spec = parse_range(request.headers.get("Range"))
        store = self.gw.store
        try:
            body: ObjectBody = await store.get(key, spec)
        except RangeNotSatisfiable:
            # Rare: judge preconditions and If-Range on the object as it is, then 416 or 200.
            meta = await store.head(key)
            early = self._preconditions(request, meta, record, extra)
            if early is not None:
                return early
            if if_range_allows(request.headers.get("If-Range"), _validators(meta)):
                raise
            body = await store.get(key, None)
        try:
            early = self._preconditions(request, body.meta, record, extra)
            if early is not None:
                return early
            if body.range is not None and not if_range_allows(
                request.headers.get("If-Range"), _validators(body.meta)
            ):
                await body.release()
                body = await store.get(key, None)
            return await self._stream(request, body, record, extra)
        finally:
            await body.release()

    async def _stream(
        self, request: web.Request, body: ObjectBody, record: AccessRecord, extra: dict[str, str]
    ) -> web.StreamResponse:
        meta = body.meta
        headers = self._headers(meta, extra)
        status = 200
        if body.range is not None:
            status = 206
            headers["Content-Range"] = body.range.content_range()
            headers["Content-Length"] = str(body.range.length)
        response = _CoalescingResponse(status=status, headers=headers)
        record.status, record.reason = status, "ok"
        metrics = self.metrics
        metrics.streams.inc()
        first_byte = metrics.ttfb_histogram(record.method)
        try:
            writer = await response.prepare(request)
            relayed = timed = False
            length = body.range.length if body.range is not None else meta.size
            if self.zero_copy and length >= relay.MIN_BYTES and writer is not None:
                relayed, timed = await self._relay(request, writer, body, record)
            if not relayed:
                async with contextlib.aclosing(body.chunks()) as chunks:
                    async for chunk in chunks:
                        await response.write(chunk)
                        if not timed:
                            first_byte.observe(time.perf_counter() - record.started)
                            timed = True
                        record.sent += len(chunk)
            await response.write_eof()
            if not timed:  # an empty body: the head went out just now
                first_byte.observe(time.perf_counter() - record.started)
        except StorageError as exc:
            # Headers are gone: the only honest signal left is to break the connection, so a
            # truncated body can never pass for a complete one.
            metrics.storage_errors.labels(exc.kind).inc()
            record.reason = "origin_aborted"
            log.warning("storage failed mid-stream after %d bytes: %s", record.sent, exc)
            if request.transport is not None:
                request.transport.abort()
        except ConnectionError:
            record.reason = "client_disconnected"
        except asyncio.CancelledError:
            # aiohttp cancels the handler when the client goes away, and so does the shutdown
            # deadline; either way the finally blocks release storage before we re-raise.
            gone = request.transport is None or request.transport.is_closing()
            record.reason = "client_disconnected" if gone else "cancelled"
            raise
        finally:
            metrics.streams.dec()
            metrics.sent_bytes.inc(record.sent)
        return response

    async def _relay(
        self,
        request: web.Request,
        writer: AbstractStreamWriter,
        body: ObjectBody,
        record: AccessRecord,
    ) -> tuple[bool, bool]:
        """Send the body with `gateway.relay` if both ends are plain sockets. Returns whether
        it did, and whether the head was sent (and timed). The head must be on the wire before
        the relay's bytes, which would overtake it: if it is not (rare: the client's socket is
        full), or anything else rules the relay out, the caller streams chunks instead."""
        transport = request.transport
        client_fd = relay.plain_socket(transport)
        if client_fd is None or transport is None:
            return False, False
        writer.send_headers()
        self.metrics.ttfb_histogram(record.method).observe(time.perf_counter() - record.started)
        if transport.get_write_buffer_size():
            return False, True
        job = relay.Relay.open(client_fd)
        if job is None:
            return False, True
        try:
            source = body.socket_body()
        except BaseException:
            job.close()
            raise
        if source is None:
            job.close()
            return False, True
        try:
            await job.run(source)
        except BaseException:
            # The body is short whatever went wrong: the connection must not carry on as if
            # the response were complete.
            transport.abort()
            raise
        finally:
            record.sent += job.sent
            self.metrics.spliced_bytes.inc(job.spliced)
        return True, True

    def _preconditions(
        self, request: web.Request, meta: ObjectMeta, record: AccessRecord, extra: dict[str, str]
    ) -> web.Response | None:
        headers = request.headers
        outcome = evaluate(
            request.method,
            headers.get("If-Match"),
            headers.get("If-None-Match"),
            headers.get("If-Modified-Since"),
            headers.get("If-Unmodified-Since"),
            _validators(meta),
        )
        if outcome is Outcome.NOT_MODIFIED:
            validators = {
                k: v
                for k, v in self._headers(meta, extra).items()
                if k in ("ETag", "Last-Modified", "Cache-Control", "Set-Cookie")
            }
            return _answer(record, web.Response(status=304, headers=validators), "not_modified")
        if outcome is Outcome.PRECONDITION_FAILED:
            return _answer(
                record, responses.error(412, "precondition_failed"), "precondition_failed"
            )
        return None

    def _headers(self, meta: ObjectMeta, extra: dict[str, str]) -> dict[str, str]:
        """Only what clients need; nothing storage-internal (x-amz-*, Server, request ids).

        `extra` (the token's signed overrides, a cookie) comes last and wins."""
        headers = {
            "Content-Type": meta.content_type,
            "Content-Length": str(meta.size),
            "Accept-Ranges": "bytes",
            "Cache-Control": self.settings.cache_control,
            # A stored HTML/SVG/PDF must not be sniffed into script, nor leak its own signed
            # URL to the next site through Referer.
            "X-Content-Type-Options": "nosniff",
            "Referrer-Policy": "no-referrer",
        }
        if meta.etag:
            headers["ETag"] = meta.etag
        if meta.last_modified:
            headers["Last-Modified"] = format_http_date(meta.last_modified)
        if meta.content_encoding:
            headers["Content-Encoding"] = meta.content_encoding
        if meta.content_disposition:
            headers["Content-Disposition"] = meta.content_disposition
        if meta.content_language:
            headers["Content-Language"] = meta.content_language
        headers.update(extra)
        return headers

    def _finish(self, record: AccessRecord) -> None:
        record.duration = time.perf_counter() - record.started
        method = Metrics.method_label(record.method)
        self.metrics.request_counter(method, record.status, record.reason).inc()
        self.metrics.duration_histogram(method).observe(record.duration)
        if access_log.isEnabledFor(logging.INFO):
            access_log.info(record.line())


class _CoalescingResponse(web.StreamResponse):
    """Holds the head back until the first body bytes, so that a small object goes out in one
    write (one segment, one wake-up of the client) rather than head and body apart. aiohttp's
    own `web.Response` does this; a StreamResponse sends its head at once unless told not to."""

    _send_headers_immediately = False


def _answer(record: AccessRecord, response: web.Response, reason: str) -> web.Response:
    record.status, record.reason = response.status, reason
    return response


def _granted_headers(claims: Claims, set_cookie: str | None) -> dict[str, str]:
    """Response headers a verified token adds: its signed overrides, and a cookie if one is due."""
    headers = {}
    if claims.response_content_type is not None:
        headers["Content-Type"] = claims.response_content_type
    if claims.response_content_disposition is not None:
        headers["Content-Disposition"] = claims.response_content_disposition
    if set_cookie is not None:
        headers["Set-Cookie"] = set_cookie
    return headers


def _validators(meta: ObjectMeta) -> Validators:
    return Validators(etag=meta.etag, last_modified=meta.last_modified)
