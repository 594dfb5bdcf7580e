"""One client connection: HTTP/1.1 framing by llhttp (`httptools`), requests handled one at a
time in order (pipelined heads wait their turn), each answer's head serialised here.

Why not aiohttp's server: measured on a cached 4 KiB answer, its request and response
machinery and the three event-loop turns it takes per request on Python 3.11 (a waiter wakes
its reader task, which starts the handler's task on the next turn, whose end wakes the reader
again) were about 45 µs of a 145 µs request. Here the handler is called from `data_received`:
an answer it has at hand (a bodiless request's refusal, a memory-tier hit) is written there and
then, with no task and no loop turn; any other request is one task. An answer is one
`transport.write` when it fits in one.

The rules a connection keeps:
* a request head is bounded (`MAX_TARGET`, `MAX_FIELD`, `MAX_HEAD`, `MAX_HEADERS`); one the
  parser refuses is answered (400, 414, 431) and the connection closed, nothing after it read;
* a body is a flow-controlled stream (aiohttp's `StreamReader`: reading pauses while it holds
  more than twice `BODY_BUFFER`), so an upload moves at the speed storage takes it;
* an answer sent before its request's body has arrived closes the connection, since the rest
  of that body must not be taken for the next request (RFC 9112 §9.3), and so does every
  answer once the server drains;
* a response whose writes wait `send_timeout` for a client that takes no bytes has its
  connection aborted (`gateway.relay.SendWatch`); the transport pauses the protocol's writing
  past its high-water mark, so this is watched only then.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import functools
import http
import logging
import socket
import time
from collections.abc import Awaitable, Coroutine
from email.utils import formatdate
from typing import TYPE_CHECKING, Final, cast

import httptools
from aiohttp.streams import StreamReader
from multidict import CIMultiDict, CIMultiDictProxy

from gateway.http_server.messages import HTTP_10, Answer, Request, Response, StreamResponse
from gateway.relay import SendWatch, acked

if TYPE_CHECKING:
    from gateway.http_server.server import Server

log = logging.getLogger("gateway.http")

MAX_TARGET: Final = 8190  # bytes of a request target (as aiohttp allowed)
MAX_FIELD: Final = 8190  # bytes of one header field, name and value
MAX_HEAD: Final = 64 * 1024  # bytes of a whole request head
MAX_HEADERS: Final = 128  # header fields in one head
MAX_QUEUED: Final = 16  # pipelined heads waiting for their turn before reading pauses
MAX_PIPELINED: Final = 64  # heads in one read (which cannot be paused midway); more: refused
#: Fields a request may state once (as aiohttp's parser held them): a second value would
#: let two readers of one head see two requests.
SINGLETONS: Final = frozenset(
    (
        b"authorization",
        b"content-length",
        b"content-location",
        b"content-range",
        b"content-type",
        b"etag",
        b"host",
        b"max-forwards",
        b"server",
        b"transfer-encoding",
        b"user-agent",
    )
)
BODY_BUFFER: Final = 2**16  # a body stream's low-water mark (aiohttp's default)
_EMPTY_BODY_STATUSES: Final = frozenset((204, 304))
_NO_HEADERS: Final[CIMultiDictProxy[str]] = CIMultiDictProxy(CIMultiDict())


class Refusal(Exception):
    """A request head the connection will not take: its status and a short reason."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


_STATUS_LINES: dict[int, bytes] = {}


def status_line(status: int) -> bytes:
    line = _STATUS_LINES.get(status)
    if line is None:
        try:
            phrase = http.HTTPStatus(status).phrase
        except ValueError:
            phrase = ""
        line = _STATUS_LINES[status] = f"HTTP/1.1 {status} {phrase}\r\n".encode()
    return line


class _Clock:
    """`Date`'s value, formatted once a second."""

    __slots__ = ("_second", "_text")

    def __init__(self) -> None:
        self._second = -1
        self._text = ""

    def date(self) -> str:
        now = int(time.time())
        if now != self._second:
            self._second, self._text = now, formatdate(now, usegmt=True)
        return self._text


CLOCK: Final = _Clock()


class Connection(asyncio.Protocol):
    __slots__ = (
        "_after_chunk",
        "_busy",
        "_closing",
        "_drain_waiter",
        "_due",
        "_fields",
        "_head_bytes",
        "_head_sent",
        "_heads_read",
        "_held",
        "_in_head",
        "_parser",
        "_parsing",
        "_pending",
        "_reading_paused",
        "_send_watch",
        "_server",
        "_singletons",
        "_stepping",
        "_target",
        "_writing_paused",
        "connected",
        "loop",
        "peer",
        "secure",
        "send_timed_out",
        "transport",
    )

    def __init__(self, server: Server) -> None:
        self._server = server
        self.loop = server.loop
        self.transport: asyncio.Transport | None = None
        self.connected = False
        self.peer: str | None = None
        self.secure = False
        self.send_timed_out = False
        self._parser = httptools.HttpRequestParser(self)
        self._target: list[bytes] = []
        self._fields: list[tuple[str, str]] = []
        self._in_head = True  # between requests, or inside a head
        self._after_chunk = False  # a chunk's size line came, none of its bytes yet
        self._singletons: set[bytes] = set()  # of the head being read
        self._head_bytes = 0  # received since the head began (while `_in_head`)
        self._heads_read = 0  # heads in the read being parsed
        self._parsing: Request | None = None  # whose body is arriving
        self._pending: collections.deque[Request] = collections.deque()
        self._busy = False  # a request is being handled
        self._stepping = False  # inside `_next`
        self._head_sent = False  # of the request being handled
        self._closing = False  # no more requests: close once the current answer is out
        self._reading_paused = False  # by its body stream's flow control
        self._held = False  # by too many pipelined heads
        self._writing_paused = False
        self._drain_waiter: asyncio.Future[None] | None = None
        self._due: Refusal | None = None  # a head refused while an answer was under way
        self._send_watch: SendWatch | None = None

    # --- asyncio.Protocol ------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport = cast(asyncio.Transport, transport)  # uvloop's is no subclass
        self.connected = True
        peer = transport.get_extra_info("peername")
        self.peer = peer[0] if isinstance(peer, tuple) else None
        self.secure = transport.get_extra_info("sslcontext") is not None
        sock = transport.get_extra_info("socket")
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._server.opened(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self.connected = False
        if self._parsing is not None:  # a body cut short: its reader must not see an end
            self._parsing.content.set_exception(
                ConnectionResetError("the connection closed before the request body ended")
            )
            self._parsing = None
        self._pending.clear()
        self._wake_drain(ConnectionResetError("the connection closed"))
        if self._send_watch is not None:
            self._send_watch.cancel()
        self._server.lost(self)
        self.transport = None

    def data_received(self, data: bytes) -> None:
        if self._closing:
            return  # after a refusal, or once the answer that closes has gone
        if self._in_head or self._after_chunk:  # a head, or maybe a chunked body's trailers
            self._head_bytes += len(data)
        self._heads_read = 0
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserCallbackError as exc:
            cause = exc.__context__
            if isinstance(cause, Refusal):
                self._refuse(cause)
            else:
                raise
        except httptools.HttpParserUpgrade:
            # No protocol to switch to: the request is answered as it is, and the connection
            # ends after it (what follows the head is not HTTP/1.1).
            self._closing = True
        except httptools.HttpParserError as exc:
            self._refuse(Refusal(400, _parser_reason(exc)))
        else:
            # llhttp keeps nothing, but httptools gathers a header field until it ends: a head
            # that never ends is bounded here, at most one read past MAX_HEAD.
            if (self._in_head or self._after_chunk) and self._head_bytes > MAX_HEAD:
                self._refuse(Refusal(431, "request head too large"))

    def pause_writing(self) -> None:
        self._writing_paused = True
        watch = self._send_watch
        if watch is None:
            watch = self._send_watch = SendWatch(
                self.loop, self._server.guard.limits.send_timeout, self._acked, self.send_stalled
            )
        watch.waiting()

    def resume_writing(self) -> None:
        self._writing_paused = False
        if self._send_watch is not None:
            self._send_watch.resumed()
        self._wake_drain(None)

    # --- what a body stream (aiohttp's StreamReader) asks of its protocol ----------------

    def pause_reading(self) -> None:
        if not self._reading_paused:
            self._reading_paused = True
            self._pause_transport()

    def resume_reading(self, resume_parser: bool = True) -> None:
        if self._reading_paused:
            self._reading_paused = False
            self._resume_transport()

    # --- llhttp's callbacks ----------------------------------------------------------------

    def on_message_begin(self) -> None:
        self._target = []
        self._singletons = set()
        self._fields = []

    def on_url(self, url: bytes) -> None:
        self._target.append(url)
        if sum(map(len, self._target)) > MAX_TARGET:
            raise Refusal(414, "request target too long")

    def on_header(self, name: bytes, value: bytes) -> None:
        if len(name) + len(value) > MAX_FIELD:
            raise Refusal(431, "header field too large")
        if len(self._fields) >= MAX_HEADERS:
            raise Refusal(431, "too many header fields")
        if not self._in_head:
            return  # a chunked body's trailer field: discarded (RFC 9110 §6.5.1), bounded above
        lower = name.lower()
        if lower in SINGLETONS:
            if lower in self._singletons:
                raise Refusal(400, f"{name.decode('latin-1')} repeated")
            self._singletons.add(lower)
        self._fields.append((name.decode("latin-1"), value.decode("utf-8", "surrogateescape")))

    def on_headers_complete(self) -> None:
        self._in_head = False
        parser = self._parser
        version = parser.get_http_version()
        headers = CIMultiDictProxy(CIMultiDict(self._fields))
        if version == "1.1" and "Host" not in headers:
            raise Refusal(400, "no Host")  # RFC 9112 §3.2: an HTTP/1.1 request MUST state one
        has_body = "Transfer-Encoding" in headers or headers.get("Content-Length", "0") != "0"
        upgrade = parser.should_upgrade()  # answered as it is, and the connection ends after it
        if has_body and upgrade:
            # llhttp would skip the body of a request it takes for an upgrade (or a CONNECT),
            # and the handler would read an empty one: there is nothing to upgrade to here.
            raise Refusal(400, "an upgrade or CONNECT with a body")
        self._heads_read += 1
        if self._heads_read > MAX_PIPELINED:  # answered at once or queued: one read's work
            raise Refusal(400, "too many pipelined requests")
        request = Request(
            self,
            parser.get_method().decode("ascii"),
            b"".join(self._target).decode("utf-8", "surrogateescape"),
            HTTP_10 if version == "1.0" else (int(version[0]), int(version[-1])),
            headers,
            parser.should_keep_alive() and not upgrade,
        )
        if has_body:
            request.content = StreamReader(self, BODY_BUFFER, loop=self.loop)  # type: ignore[arg-type]
            self._parsing = request
        self._pending.append(request)
        if len(self._pending) > MAX_QUEUED and not self._held:
            self._held = True
            self._pause_transport()
        self._next()

    def on_chunk_header(self) -> None:
        # Until body bytes follow, what comes may be the last chunk's trailer section, which
        # httptools gathers until its line ends: bounded like a head.
        self._after_chunk = True
        self._head_bytes = 0

    def on_chunk_complete(self) -> None:
        self._after_chunk = False

    def on_body(self, body: bytes) -> None:
        self._after_chunk = False
        if self._parsing is not None:
            self._parsing.content.feed_data(body)

    def on_message_complete(self) -> None:
        if self._parsing is not None:
            self._parsing.content.feed_eof()
            self._parsing = None
        self._in_head = True
        self._head_bytes = 0

    # --- handling ----------------------------------------------------------------------------

    def _next(self) -> None:
        """Handle the queued requests in turn while each is answered at once; the first that
        must wait gets a task of its own, whose end comes back here. A loop rather than a
        recursion: a read may hold 64 pipelined heads."""
        if self._stepping:
            return  # an answer given at once, inside the loop below
        self._stepping = True
        try:
            while not self._busy and self._pending and self.connected and not self._closing:
                request = self._pending.popleft()
                self._head_sent = False
                if self._held and len(self._pending) <= MAX_QUEUED // 2:
                    self._held = False
                    self._resume_transport()
                self._busy = True
                self._server.guard.started(self)
                if request.body_exists:
                    # Its body may still be in this read: the handler runs once it is parsed
                    # (an answer given now would find the body unread, and close).
                    self._start(request, self._handle(request, None))
                    continue
                try:
                    result = self._server.handler(request)
                except ConnectionError:
                    self._end(request, complete=False)  # the client went away
                    continue
                except Exception:
                    log.exception("a request failed with an unexpected error")
                    result = None
                if result is None or isinstance(result, Response):
                    self._answer_now(request, result)
                else:
                    self._start(request, self._handle(request, result), result)
        finally:
            self._stepping = False

    def _start(
        self,
        request: Request,
        handling: Coroutine[None, None, None],
        pending: Awaitable[Response | StreamResponse] | None = None,
    ) -> None:
        task = request.task = self.loop.create_task(handling)
        self._server.in_flight.track(task)
        task.add_done_callback(functools.partial(self._unstarted, request, pending))

    def _unstarted(
        self,
        request: Request,
        pending: Awaitable[Response | StreamResponse] | None,
        task: asyncio.Task[None],
    ) -> None:
        """A task cancelled before its first step (a shutdown's cut in the loop turn that made
        it) ran none of its code: the request ends here, with what its handler returned closed
        unawaited."""
        if task.cancelled() and not request.handled:
            if isinstance(pending, Coroutine):
                pending.close()
            self._end(request, complete=False)

    def _answer_now(self, request: Request, answer: Response | None) -> None:
        complete = self._deliver(request, answer)
        if complete and self._writing_paused:  # the next answer waits until the client takes this
            self._start(request, self._drained(request))
        else:
            self._end(request, complete)

    async def _drained(self, request: Request) -> None:
        request.handled = True
        complete = True
        try:
            await self.drain()
        except ConnectionError:
            complete = False
        finally:
            self._end(request, complete)

    async def _handle(
        self, request: Request, pending: Awaitable[Response | StreamResponse] | None
    ) -> None:
        """Handle `request` in its task: await `pending`, what its handler returned, or (None)
        call the handler first."""
        request.handled = True
        complete = False  # the answer went out whole, and the connection may carry on
        try:
            try:
                if pending is None:
                    result = self._server.handler(request)
                    pending = None if isinstance(result, Response) else result
                    answer: Response | StreamResponse | None = (
                        result if isinstance(result, Response) else None
                    )
                if pending is not None:
                    answer = await pending
            except ConnectionError:
                return  # the client went away (or broke its body's framing): nobody to answer
            except Exception:
                log.exception("a request failed with an unexpected error")
                answer = None
            complete = self._deliver(request, answer)
            if complete:
                await self.drain()  # the next answer waits until the client takes this one
        except ConnectionError:
            complete = False  # the client went away: nothing is left to answer
        finally:
            self._end(request, complete)

    def _deliver(self, request: Request, answer: Response | StreamResponse | None) -> bool:
        """Send what is left of `answer` (None: the handler failed); whether it went out whole
        and the connection may carry on. Never raises: it runs inside the parser's callbacks."""
        try:
            if isinstance(answer, Response):
                self._send_whole(request, answer)
                return True
            if answer is not None and answer.finished:
                return True
            if not self._head_sent and self.connected:  # nothing sent yet: say so
                self._send_whole(request, self._server.refusal(500))
                return True
        except ConnectionError:
            pass  # the client went away: nothing is left to answer
        except Exception:
            log.exception("an answer could not be written")
            if not self._head_sent and self.connected:
                self._closing = True  # closed once the 500 is out
                try:
                    self._send_whole(request, self._server.refusal(500))
                    return True
                except Exception:  # noqa: S110 - logged above; nothing more can be said
                    pass
        return False

    def _end(self, request: Request, complete: bool) -> None:
        self._busy = False
        if not complete:
            # Cut short (a stream that stopped, a cancelled handler, a client gone): the
            # connection ends here, so nothing after it can pass for this answer's rest.
            self._closing = True
            if self.transport is not None:
                if self._head_sent:
                    self.transport.abort()
                else:
                    self.transport.close()
        self._finished(request)

    def _finished(self, request: Request) -> None:
        if not self.connected:
            return
        if self._closing or not request.keep_alive:
            self._closing = True
            assert self.transport is not None
            due, self._due = self._due, None
            if due is not None and request.keep_alive:  # the answer promised a next one
                self._answer_refusal(due)
            self.transport.close()  # after what is buffered
            return
        self._server.guard.finished(self)
        self._next()

    def _send_whole(self, request: Request, answer: Response) -> None:
        head = self.head(request, answer)
        body = answer.body
        if body and request.method != "HEAD" and not _empty_body(answer.status):
            self.write(head + body)
        else:
            self.write(head)

    def head(self, request: Request, answer: Answer) -> bytes:
        """The answer's head, and the connection's decision to stay open after it."""
        headers = answer.headers
        self._server.before_answer(request, answer)
        status = answer.status
        if isinstance(answer, Response) and "Content-Length" not in headers:
            if not _empty_body(status) and (answer.body or request.method != "HEAD"):
                headers["Content-Length"] = str(len(answer.body))
        elif _empty_body(status):
            headers.pop("Content-Length", None)
        keep_alive = (
            request.keep_alive
            and not answer.close
            and not self._closing
            and not self._server.draining
            and (not request.body_exists or request.content.is_eof())
            and ("Content-Length" in headers or _empty_body(status) or request.method == "HEAD")
        )
        request.keep_alive = keep_alive
        parts = [f"{name}: {value}\r\n" for name, value in headers.items()]
        parts.append(f"Date: {CLOCK.date()}\r\nServer: {self._server.name}\r\n")
        if not keep_alive:
            parts.append("Connection: close\r\n")
        elif request.version == HTTP_10:
            parts.append("Connection: keep-alive\r\n")
        text = "".join(parts)
        lines = len(parts) + 1  # the Date and Server part is two lines
        if text.count("\n") != lines or text.count("\r") != lines:
            raise ValueError("a header name or value holds a line break")
        self._head_sent = True
        return status_line(status) + text.encode("utf-8", "surrogateescape") + b"\r\n"

    # --- writing -----------------------------------------------------------------------------

    def write(self, data: bytes) -> None:
        transport = self.transport
        if transport is None or transport.is_closing():
            raise ConnectionResetError("the client went away")
        transport.write(data)

    async def drain(self) -> None:
        """Wait while the transport's buffer is past its high-water mark."""
        if not self._writing_paused:
            return
        if not self.connected:
            raise ConnectionResetError("the client went away")
        waiter = self._drain_waiter
        if waiter is None:
            waiter = self._drain_waiter = self.loop.create_future()
        await asyncio.shield(waiter)

    def _wake_drain(self, exc: Exception | None) -> None:
        waiter, self._drain_waiter = self._drain_waiter, None
        if waiter is not None and not waiter.done():
            if exc is None:
                waiter.set_result(None)
            else:
                waiter.set_exception(exc)
                waiter.exception()  # retrieved: a drain nobody awaits any more is not an error

    # --- closing -------------------------------------------------------------------------

    @property
    def local(self) -> str:
        """This listener's address as a `Host` value ("[::1]:8080"), or "" if unknown."""
        sockname = None if self.transport is None else self.transport.get_extra_info("sockname")
        if not isinstance(sockname, tuple):
            return ""
        host = f"[{sockname[0]}]" if ":" in sockname[0] else sockname[0]
        return f"{host}:{sockname[1]}"

    @property
    def queued(self) -> int:
        """Pipelined heads waiting for their turn."""
        return len(self._pending)

    def force_close(self) -> None:
        """Close now (an idle connection: the guard's deadlines and cap, a shutdown)."""
        self._closing = True
        if self.transport is not None:
            self.transport.close()

    def send_stalled(self) -> None:
        """The client took nothing for `send_timeout` (seen here, or by a relay writing to its
        socket): count it once and abort the connection, so the response's pending write
        fails and the handler lets go of storage and its stream slot."""
        if self.send_timed_out:
            return
        self.send_timed_out = True
        self._server.guard.stalled(self)
        if self.transport is not None:
            self.transport.abort()

    def _refuse(self, refusal: Refusal) -> None:
        """A head the parser refused: answered (after the answer under way, if that one still
        leaves the connection open), logged by its reason only (never the bytes, which may
        carry a token), and nothing more read."""
        if self._closing:
            # An answer has ended the connection already (llhttp parses the rest of a read
            # regardless): nothing more is read, so nothing is refused, counted or logged.
            self._pending.clear()
            return
        log.info("refused a request head: %s (%d)", refusal.reason, refusal.status)
        self._closing = True
        self._pending.clear()
        in_a_body = self._parsing is not None
        if self._parsing is not None:
            self._parsing.content.set_exception(ConnectionResetError("the request was malformed"))
            self._parsing = None
        if self._busy:
            if not in_a_body:  # a head after the one being answered: its turn comes after it
                self._due = refusal
            return
        if self.transport is not None:
            self._answer_refusal(refusal)
            self.transport.close()

    def _answer_refusal(self, refusal: Refusal) -> None:
        assert self.transport is not None
        answer = self._server.refusal(refusal.status)
        answer.force_close()
        unread = Request(self, "GET", "", HTTP_10, _NO_HEADERS, keep_alive=False)
        with contextlib.suppress(ConnectionError):
            self._send_whole(unread, answer)

    def _pause_transport(self) -> None:
        if self.transport is not None:
            with contextlib.suppress(RuntimeError):  # closing
                self.transport.pause_reading()

    def _resume_transport(self) -> None:
        if self.transport is not None and not (self._reading_paused or self._held):
            with contextlib.suppress(RuntimeError):
                self.transport.resume_reading()

    def _acked(self) -> int | None:
        transport = self.transport
        return None if transport is None else acked(transport.get_extra_info("socket"))


def _empty_body(status: int) -> bool:
    return status in _EMPTY_BODY_STATUSES or status < 200


def _parser_reason(exc: httptools.HttpParserError) -> str:
    """llhttp's words for what it refused ("Invalid header value char"), without the input."""
    text = str(exc)
    return text.partition(":")[0][:80] if text else type(exc).__name__
