"""The request pipeline, visible in one place:

    client address -> locate token -> verify token -> lifetime -> object key -> revocation
        -> usage limits (links that carry them) -> (PUT: gateway/uploads.py)
        -> [limits admit a plain GET] -> plan from metadata -> storage
        -> [limits admit the body, when its length is needed] -> stream (paced: Rate)

A POST is an S3 presigned POST form (gateway/form_upload.py): its policy travels in the body,
so it is verified there, and comes back here for the same key mapping and revocation check
(`_admitted`) before its file reaches storage.

The token may travel in the query, the path or a cookie (`token_source`); all three end in the
one `verify` call below. A link of another scheme (an S3 presigned URL, `signer.schemes`) is
verified by its scheme into the same claims, and from there on is treated alike. Nothing
touches storage before the token is verified and checked against revocations. Refusals are
raised (`gateway.errors`) and answered in `__call__`; every exit goes through `_finish`, which
records the outcome once for metrics and the access log.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, Final

from multidict import CIMultiDictProxy

from gateway import relay
from gateway.cache import Cache, CachedBody, FilePart, Fill, FillBody, VersionChanged
from gateway.cache import State as CacheState
from gateway.cache.tiers import Cached
from gateway.client_address import client_address, forwarded_host
from gateway.cookies import CookieIssuer
from gateway.errors import Outcome, Refusal, Refused, answer, refusal_for
from gateway.form_upload import FormUploads
from gateway.http.cors import is_preflight
from gateway.http.plan import Plan, is_conditional, object_headers, plan, storage_range
from gateway.http.ranges import parse_range, unsatisfiable_content_range
from gateway.http_server import Request, Response, StreamResponse
from gateway.limits import Admission
from gateway.observability.access_log import AccessRecord
from gateway.observability.access_log import lines as access_lines
from gateway.observability.metrics import Metrics
from gateway.services import Services
from gateway.storage import ObjectBody, ObjectMeta, OriginError, RangeNotSatisfiable, StorageError
from gateway.storage.keys import InvalidKey, object_key
from gateway.token_source import Presented, candidates, first_verified, verify_scheme
from gateway.uploads import Uploads, expectation_failed
from signer import Reason, Rejected, verify
from signer.addresses import IPAddress
from signer.format import METHODS, Claims, strip_path_token
from signer.schemes import EDGE, LinkRequest, scheme_words
from signer.verify import Verified

log = logging.getLogger("gateway.handler")

#: Statuses whose answer carries the object's bytes.
_STREAMED: Final = frozenset((200, 206))
#: Reads of one request: storage answering with another version each time gives up (502).
_READ_ATTEMPTS: Final = 3
#: The largest body from storage answered whole when it came with the head: one that a stream
#: would also have put in the transport's buffer at once (its high-water mark, 64 KiB), so the
#: access record says the same either way; larger ones stream (and splice, past 1 MiB).
_WHOLE_MAX: Final = 64 * 1024
#: What is left of a request once it must wait (for storage, a body, a limit).
Later = Callable[[], Awaitable[StreamResponse | Response]]


class Pipeline:
    def __init__(self, services: Services) -> None:
        self.services = services
        self.settings = services.settings
        self.metrics = services.metrics
        self.store = services.store
        self.prefix = services.settings.origin.prefix
        self.max_lifetime = services.settings.links.max_lifetime
        self.skew = services.settings.links.clock_skew
        self.cache_control = services.settings.cache_control
        self.inline_active = services.settings.inline_active_types
        self.revocations = services.revocations
        self.fail_open = services.settings.revocation.fail_open
        self.proxies = services.proxies
        self.cors = services.cors
        self.cookies = CookieIssuer(services.settings.cookie, services.proxies)
        self.uploads = Uploads(services)
        self.zero_copy = services.settings.zero_copy and relay.AVAILABLE
        self.send_timeout = services.settings.timeouts.send
        self.cache = services.cache
        self.access_log = services.settings.log.access
        origin = services.settings.origin
        # The bucket path-style links name (S3 presigned URLs): the origin's, or for a file://
        # origin the directory's name.
        self.bucket = origin.bucket or (origin.path.name if origin.path is not None else "")
        self.limits = services.limits
        self.form_uploads = FormUploads(services, self.uploads, self.bucket, self._admitted)

    def __call__(
        self, request: Request
    ) -> Response | Coroutine[Any, Any, StreamResponse | Response]:
        """Answer `request` at once when nothing needs waiting for (a refusal, a preflight, a
        fresh hit of the memory tier: no task and no event-loop turn, which measured as about
        a tenth of such a hit's cost), else return the coroutine that answers it, which the
        server runs as the request's task."""
        proxies = self.proxies
        client = client_address(request.peer, request.headers.getall(proxies.header, ()), proxies)
        raw_path = request.raw_path.partition("?")[0]
        record = AccessRecord(
            request.method, strip_path_token(raw_path), _address_text(client) if client else None
        )
        try:
            try:
                step = self._front(request, record, client)
            except (Refused, Rejected, StorageError) as exc:
                step = self._refused(record, exc)
        except BaseException:
            self._finish(record)
            raise
        if isinstance(step, Response):
            self._finish(record)
            return step
        return self._later(request, record, step)

    async def _later(
        self, request: Request, record: AccessRecord, step: Later
    ) -> StreamResponse | Response:
        try:
            return await step()
        except (Refused, Rejected, StorageError) as exc:
            return self._refused(record, exc)
        except asyncio.CancelledError:
            if not record.status:  # gone (or cut by the deadline) before an answer was chosen
                record.reason = _cancelled(request, self.services.in_flight.cutting)
            raise
        finally:
            self._finish(record)

    def _refused(self, record: AccessRecord, exc: Refused | Rejected | StorageError) -> Response:
        if isinstance(exc, StorageError):
            self.metrics.storage_errors.labels(exc.kind).inc()
        elif isinstance(exc, Rejected) and exc.claims is not None:
            record.key_id, record.sub = exc.claims.key_id, exc.claims.sub
        record.status, record.reason = refusal_for(exc)
        return answer(exc, scheme_words(record.scheme, record.reason))

    def _front(
        self, request: Request, record: AccessRecord, client: IPAddress | None
    ) -> Response | Later:
        """Everything up to the first wait: the answer, or what goes on to storage (or a
        body) to find it."""
        method = request.method
        if is_preflight(method, request.headers):
            posts = self.form_uploads.accepts(request.raw_path)
            allowed = self.cors.preflight(request.headers, (*METHODS, "POST") if posts else METHODS)
            if allowed is None:
                raise Refused(Refusal.CORS_REFUSED)
            return _answered(record, Response(204, allowed), Outcome.PREFLIGHT)
        if method not in METHODS:
            if method == "POST":
                return functools.partial(self.form_uploads.post, request, record, client)
            raise Refused(Refusal.METHOD_NOT_ALLOWED)
        if expectation_failed(request):
            raise Refused(Refusal.EXPECTATION_FAILED)
        raw_path, _, raw_query = request.raw_path.partition("?")
        keyring, skew, lifetime = self.services.keyring.current, self.skew, self.max_lifetime

        def check(p: Presented) -> Verified:
            if p.scheme != EDGE:
                link = self._link_request(request, p, client)
                found = verify_scheme(p, keyring, link, bucket=self.bucket, skew=skew)
                claims = found.claims
                # As verify's step 10a (a link stating no issue time holds it: `unstated_issue`).
                if claims.expires - claims.issued > lifetime:
                    raise Rejected(Reason.LIFETIME_EXCEEDED, claims=claims)
                return found
            return verify(
                keyring,
                method=method,
                raw_path=p.raw_path,
                raw_query=p.raw_query,
                client_ip=client,
                skew=skew,
                max_lifetime=lifetime,  # outlives what revocations are kept for: refused
            )

        headers = request.headers
        found = candidates(
            raw_path, raw_query, headers.getall("Cookie", ()), lambda n: headers.getall(n, ())
        )
        record.scheme = found[0].scheme
        presented, verified = first_verified(found, check)
        record.scheme = presented.scheme  # the candidate that passed (an EdgeToken may not have)
        claims = verified.claims
        record.key_id, record.sub, record.token_id = claims.key_id, claims.sub, verified.token_id
        key = self._admitted(verified)
        if method == "PUT":
            return functools.partial(self.uploads.put, request, verified, key, record)
        limits = self.limits
        # A link without limits stops here at one attribute test; one with limits is judged
        # once its body's length is known, just before the head (`_stream`).
        admission = (
            limits.admission(claims, verified.token_id, record.client)
            if limits is not None and claims.has_limits
            else None
        )
        granted = _granted_headers(claims, self.cookies.set_cookie(request, presented, claims))
        if admission is None and self.cache is not None:
            cached, now = self.cache.entry(key), time.time()
            if cached is not None and self.cache.fresh(cached, now):
                settled = self._settled(
                    self.cache, request, cached, CacheState.HIT, record, granted, now
                )
                if isinstance(settled, Response):
                    return settled
        return functools.partial(self._read, request, key, record, granted, admission)

    def _admitted(self, verified: Verified) -> str:
        """The object key of a verified link, once it is known not to be revoked."""
        try:
            key = object_key(verified.path, self.prefix)
        except InvalidKey:
            raise Refused(Refusal.INVALID_PATH) from None
        if not self.revocations.loaded and not self.fail_open:
            raise Refused(Refusal.REVOCATIONS_UNAVAILABLE)  # a miss would mean nothing yet
        if self.revocations.revoked(verified.claims, verified.token_id, verified.path) is not None:
            raise Rejected(Reason.REVOKED)
        return key

    def _link_request(
        self, request: Request, presented: Presented, client: IPAddress | None
    ) -> LinkRequest:
        """What another scheme's verifier sees: the target, and the headers it may sign (the
        host the client asked for, as a trusted proxy forwarded it)."""
        headers = request.headers

        def header(name: str) -> list[str]:
            return headers.getall(name, [])

        host = forwarded_host(request.peer, headers.get("Host"), header, self.proxies)
        return LinkRequest(
            request.method,
            presented.raw_path,
            presented.raw_query,
            host=host,
            header=header,
            client_ip=client,
            max_lifetime=self.max_lifetime,
        )

    async def _read(
        self,
        request: Request,
        key: str,
        record: AccessRecord,
        granted: dict[str, str],
        admission: Admission | None = None,
    ) -> StreamResponse | Response:
        """GET or HEAD. A conditional request (or a HEAD) asks storage for metadata first, so
        a 304 or 412 moves no bytes; a plain GET asks for the body at once (one round trip)
        and plans from the metadata that comes with it. A limited plain GET is admitted before
        storage is asked, unless MaxServed needs the body's length (then in `_stream`)."""
        if admission is None:
            if self.cache is not None:
                return await self._read_cached(self.cache, request, key, record, granted)
            return await self._read_uncached(request, key, record, granted)
        if admission.early and request.method == "GET" and not is_conditional(request.headers):
            spec = parse_range(request.headers.get("Range"))
            await admission.admit(0, from_start=spec is None or spec.first == 0)
        try:
            if self.cache is not None:
                return await self._read_cached(self.cache, request, key, record, granted, admission)
            return await self._read_uncached(request, key, record, granted, admission)
        finally:
            await admission.finish(0, streamed=False)  # no-op once `_stream` settled it

    async def _read_uncached(
        self,
        request: Request,
        key: str,
        record: AccessRecord,
        granted: dict[str, str],
        admission: Admission | None = None,
    ) -> StreamResponse | Response:
        method, headers, store = request.method, request.headers, self.store
        spec = parse_range(headers.get("Range"))
        beyond = spec is not None and spec.beyond_any_object
        if method == "HEAD" or beyond or is_conditional(headers):
            meta = await store.head(key)
            planned = plan(method, headers, meta)
            if method == "HEAD" or planned.status not in _STREAMED:
                return self._without_body(meta, planned, record, granted)
            spec = storage_range(planned)
        for _ in range(_READ_ATTEMPTS):
            body: ObjectBody = await store.get(key, spec)
            try:
                # The object may have changed since its metadata was read: judge what came.
                planned = plan(method, headers, body.meta)
                if planned.status not in _STREAMED:
                    return self._without_body(body.meta, planned, record, granted)
                if planned.range == body.range:
                    return await self._stream(request, body, planned, record, granted, admission)
                spec = storage_range(planned)
            finally:
                await body.release()
        raise OriginError("the object changed on every read of this request")

    async def _read_cached(
        self,
        cache: Cache,
        request: Request,
        key: str,
        record: AccessRecord,
        granted: dict[str, str],
        admission: Admission | None = None,
    ) -> StreamResponse | Response:
        """GET or HEAD with the cache on: the same plan, from cached metadata when there is a
        fresh entry (a 304 or a HEAD then asks nothing of storage), with the body from the cache
        and whatever slices are missing fetched once, however many requests want them."""
        method, headers, store = request.method, request.headers, self.store
        for _ in range(_READ_ATTEMPTS):
            now = time.time()
            try:
                cached, state, fill = await self._cached_entry(cache, key, method, headers, now)
            except VersionChanged:
                continue  # a fill joined for the old version found the new one: judge it
            if cached is None:  # not to be cached (no-store, too large): straight through
                record.cache = CacheState.BYPASS
                self.metrics.cache_counter(CacheState.BYPASS).inc()
                if fill is not None and fill.meta is not None:
                    meta = fill.meta
                    planned = plan(method, headers, meta)
                    if planned.status not in _STREAMED:
                        return self._without_body(meta, planned, record, granted)
                    if FillBody.covering(fill, planned.range):  # what it holds: fetched once
                        passed = FillBody(store, key, fill, meta, planned.range)
                        try:
                            return await self._stream(
                                request, passed, planned, record, granted, admission
                            )
                        finally:
                            await passed.release()
                return await self._read_uncached(request, key, record, granted, admission)
            settled = self._settled(cache, request, cached, state, record, granted, now, admission)
            if isinstance(settled, Response):
                return settled
            planned, granted, state = settled
            try:
                body = await cache.open(store, cached, planned.range)
            except VersionChanged:
                continue  # nothing sent yet: judge the new version
            except StorageError:
                self._count_cache(record, state)  # a miss storage failed to fill
                raise
            self._count_cache(record, state)
            try:
                return await self._stream(request, body, planned, record, granted, admission)
            finally:
                await body.release()
        raise OriginError("the object changed on every read of this request")

    def _settled(
        self,
        cache: Cache,
        request: Request,
        cached: Cached,
        state: CacheState,
        record: AccessRecord,
        granted: dict[str, str],
        now: float,
        admission: Admission | None = None,
    ) -> Response | tuple[Plan, dict[str, str], CacheState]:
        """The answer an entry gives without waiting (a HEAD, a 304 or 412, a memory-tier
        body), or what is left to do: the plan, the headers granted with `Age`, and the state
        to count once the body is open (a hit whose bytes are not all held is a miss)."""
        granted = {**granted, "Age": str(max(0, int(now - cached.validated)))}
        planned = plan(request.method, request.headers, cached.meta)
        streamed = request.method != "HEAD" and planned.status in _STREAMED
        if state is CacheState.HIT and streamed and not cache.holds(cached, planned.range):
            state = CacheState.MISS  # fresh metadata, but bytes to fetch: not a hit
        if not streamed:
            self._count_cache(record, state)
            return self._without_body(cached.meta, planned, record, granted)
        if cached.body is not None and admission is None and request.connection.connected:
            self._count_cache(record, state)
            data = cache.memory_bytes(cached, planned.range)
            return self._whole(cached.meta, planned, data, record, granted)
        return planned, granted, state

    async def _cached_entry(
        self, cache: Cache, key: str, method: str, headers: CIMultiDictProxy[str], now: float
    ) -> tuple[Cached | None, CacheState, Fill | None]:
        """The entry to answer from (fresh, revalidated or stale), fetched on a miss; None when
        the object is not to be cached, with the fill that found so if there was one."""
        cached, state = cache.entry(key), CacheState.HIT
        if cached is not None and not cache.fresh(cached, now):
            cached, state = await cache.revalidate(self.store, cached, now)
        if cached is not None:
            return cached, state, None
        index = (
            None
            if method == "HEAD" or is_conditional(headers)
            else cache.first_slice(parse_range(headers.get("Range")))
        )
        fill = None
        if index is None:
            cache.remember(key, await self.store.head(key), now)
        else:
            try:
                fill = cache.fill(self.store, key, index, None)
                await fill.head()
            except RangeNotSatisfiable:  # past the end: the size says what to answer
                fill = None
                cache.remember(key, await self.store.head(key), now)
        return cache.entry(key), CacheState.MISS, fill

    def _count_cache(self, record: AccessRecord, state: CacheState) -> None:
        record.cache = state
        self.metrics.cache_counter(state).inc()

    def _without_body(
        self, meta: ObjectMeta, planned: Plan, record: AccessRecord, granted: dict[str, str]
    ) -> Response:
        """A HEAD, a 304, or the refusal a plan ends in (412, 416)."""
        if planned.status == 412:
            raise Refused(Refusal.PRECONDITION_FAILED)
        if planned.status == 416:  # judged here, not by storage
            raise Refused(
                Refusal.RANGE_NOT_SATISFIABLE,
                headers={"Content-Range": unsatisfiable_content_range(meta.size)},
            )
        headers = self._headers(meta, planned, granted)
        reason = Outcome.NOT_MODIFIED if planned.status == 304 else Outcome.OK
        return _answered(record, Response(planned.status, headers), reason)

    def _whole(
        self,
        meta: ObjectMeta,
        planned: Plan,
        data: bytes,
        record: AccessRecord,
        granted: dict[str, str],
    ) -> Response:
        """A body at hand (a memory-tier hit, a small object that came with storage's head)
        for a link without limits: answered whole, head and body in one write by the server,
        without a stream's machinery, which profiled as about a fifth of a memory hit's cost.
        A link with limits is admitted and paced by `_stream`."""
        record.status, record.reason, record.sent = planned.status, Outcome.OK, len(data)
        self.metrics.sent_bytes.inc(len(data))
        self.metrics.ttfb_histogram(record.method).observe(time.perf_counter() - record.started)
        return Response(planned.status, self._headers(meta, planned, granted), data)

    def _headers(self, meta: ObjectMeta, planned: Plan, granted: dict[str, str]) -> dict[str, str]:
        return object_headers(
            meta,
            planned,
            cache_control=self.cache_control,
            granted=granted,
            inline_active=self.inline_active,
        )

    async def _send_cached(
        self,
        request: Request,
        response: StreamResponse,
        body: CachedBody,
        record: AccessRecord,
    ) -> tuple[bool, bool]:
        """Send a cached body straight to a plain client socket: slice files by sendfile(2),
        bytes still arriving from storage by write(2). Same contract as `_relay`."""
        client_fd, sent_head = self._flushed_socket(request, response, record)
        transport = request.transport
        if client_fd is None or transport is None:
            return False, sent_head
        sender = relay.Sender.open(client_fd, send_timeout=self.send_timeout)
        if sender is None:
            return False, True
        try:
            async with contextlib.aclosing(body.parts()) as parts:
                async for part in parts:
                    if isinstance(part, FilePart):
                        with part.handle:
                            await sender.sendfile(part.handle.fileno(), part.offset, part.count)
                        self.metrics.sendfile_bytes.inc(part.count)
                    else:
                        await sender.write(part)
        except BaseException as exc:
            _abort(request, exc)  # the body is short: never let it pass for a complete one
            raise
        finally:
            record.sent += sender.sent
            sender.close()
        return True, True

    async def _stream(
        self,
        request: Request,
        body: ObjectBody,
        planned: Plan,
        record: AccessRecord,
        granted: dict[str, str],
        admission: Admission | None = None,
    ) -> StreamResponse | Response:
        length = body.range.length if body.range is not None else body.meta.size
        if admission is None and length <= _WHOLE_MAX and request.connection.connected:
            data = body.arrived()
            if data is not None:
                return self._whole(body.meta, planned, data, record, granted)
        if admission is not None:
            try:
                await admission.admit(
                    length, from_start=planned.range is None or planned.range.start == 0
                )
            except Refused:
                if isinstance(body, CachedBody):
                    await body.release()
                raise
        paced = admission is not None and admission.paced
        headers = self._headers(body.meta, planned, granted)
        response = StreamResponse(planned.status, headers)
        record.status, record.reason = planned.status, Outcome.OK
        metrics = self.metrics
        metrics.streams.inc()
        first_byte = metrics.ttfb_histogram(record.method)
        try:
            response.prepare(request)
            relayed = timed = False
            # A paced body goes chunk by chunk (each booked on the link's schedule): splice(2)
            # and sendfile(2) hand the whole body to the kernel, which cannot be paced.
            if self.zero_copy and length >= relay.MIN_BYTES and not paced:
                if isinstance(body, CachedBody):
                    relayed, timed = await self._send_cached(request, response, body, record)
                else:
                    relayed, timed = await self._relay(request, response, body, record)
            if not relayed:
                async with contextlib.aclosing(body.chunks()) as chunks:
                    async for chunk in chunks:
                        if paced:
                            assert admission is not None
                            await admission.pace(len(chunk))
                        if record.sent + len(chunk) == length:
                            # The last: with the head if that is still held, and the end, in
                            # one write (a small object: one chunk).
                            await response.write_eof(chunk)
                        else:
                            await response.write(chunk)
                        if not timed:
                            first_byte.observe(time.perf_counter() - record.started)
                            timed = True
                        record.sent += len(chunk)
            await response.write_eof()
            if not timed:  # an empty body: the head went out just now
                first_byte.observe(time.perf_counter() - record.started)
            if (
                request.connection.send_timed_out
            ):  # its last write waited, and the connection was aborted
                record.reason = Outcome.SEND_TIMEOUT
        except StorageError as exc:
            # Headers are gone: the only honest signal left is to break the connection, so a
            # truncated body can never pass for a complete one.
            metrics.storage_errors.labels(exc.kind).inc()
            record.reason = Outcome.ORIGIN_ABORTED
            log.warning("storage failed mid-stream after %d bytes: %s", record.sent, exc)
            if request.transport is not None:
                request.transport.abort()
        except ConnectionError as exc:
            stalled = isinstance(exc, relay.ClientStalled) or request.connection.send_timed_out
            record.reason = Outcome.SEND_TIMEOUT if stalled else Outcome.CLIENT_DISCONNECTED
        except asyncio.CancelledError:
            # The shutdown deadline cancels the handler (gateway.drain), and so may aiohttp when
            # the client goes away; either way the finally blocks release storage.
            record.reason = _cancelled(request, self.services.in_flight.cutting)
            raise
        finally:
            metrics.streams.dec()
            metrics.sent_bytes.inc(record.sent)
            if admission is not None:
                await admission.finish(record.sent)
        return response

    async def _relay(
        self,
        request: Request,
        response: StreamResponse,
        body: ObjectBody,
        record: AccessRecord,
    ) -> tuple[bool, bool]:
        """Send the body with `gateway.relay` if both ends are plain sockets. Returns whether
        it did, and whether the head was sent (and timed). The head must be on the wire before
        the relay's bytes, which would overtake it: if it is not (rare: the client's socket is
        full), or anything else rules the relay out, the caller streams chunks instead."""
        client_fd, sent_head = self._flushed_socket(request, response, record)
        transport = request.transport
        if client_fd is None or transport is None:
            return False, sent_head
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
            await job.run(source, send_timeout=self.send_timeout)
        except BaseException as exc:
            # The body is short whatever went wrong: the connection must not carry on as if
            # the response were complete.
            _abort(request, exc)
            raise
        finally:
            record.sent += job.sent
            self.metrics.spliced_bytes.inc(job.spliced)
        return True, True

    def _flushed_socket(
        self, request: Request, response: StreamResponse, record: AccessRecord
    ) -> tuple[int | None, bool]:
        """The client's plain socket with the response head already on the wire (bytes written
        to the socket directly would overtake a head still buffered), or None; and whether the
        head was sent (and timed)."""
        transport = request.transport
        client_fd = relay.plain_socket(transport)
        if client_fd is None or transport is None:
            return None, False
        response.send_headers()
        self.metrics.ttfb_histogram(record.method).observe(time.perf_counter() - record.started)
        if transport.get_write_buffer_size():
            return None, True
        return client_fd, True

    def _finish(self, record: AccessRecord) -> None:
        record.duration = time.perf_counter() - record.started
        method = Metrics.method_label(record.method)
        self.metrics.request_counter(method, record.status, record.reason).inc()
        if record.scheme is not None:
            self.metrics.link_counter(record.scheme, record.reason).inc()
        self.metrics.duration_histogram(method).observe(record.duration)
        if self.access_log:  # this gateway's setting (`lines` is the process's stdout)
            access_lines.write(record)


def _abort(request: Request, exc: BaseException) -> None:
    """Abort the connection of a response cut short by `exc` (counted if the client stalled)."""
    if isinstance(exc, relay.ClientStalled):
        request.connection.send_stalled()
    elif request.transport is not None:
        request.transport.abort()


def _cancelled(request: Request, cutting: bool) -> Outcome:
    """Why a stream was cancelled: the shutdown deadline, the send timeout, a client gone, or
    neither."""
    if cutting:
        return Outcome.SHUTDOWN
    if request.connection.send_timed_out:
        return Outcome.SEND_TIMEOUT
    gone = request.transport is None or request.transport.is_closing()
    return Outcome.CLIENT_DISCONNECTED if gone else Outcome.CANCELLED


@functools.lru_cache(maxsize=4096)
def _address_text(address: IPAddress) -> str:
    """`str(address)`, which spells an address out digit by digit, once per client."""
    return str(address)


def _answered(record: AccessRecord, response: Response, reason: Outcome) -> Response:
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
