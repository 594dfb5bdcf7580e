"""Client connections: a deadline for every request head, and a cap on open connections.

aiohttp waits for a request as long as a client likes, so connections that send nothing, or
one header byte a second, would each hold a descriptor for ever, and enough of them make
`accept` fail for everyone (EMFILE). Here a connection is *idle* while no request is being
handled on it, and an idle connection is closed

* when its deadline passes: `header_timeout` after it opened, `keepalive_timeout` after its
  previous response (a complete request head must arrive by then, or the connection goes,
  however many bytes it trickles);
* when a new connection would take the worker past `max_connections`: the connection idle the
  longest goes first (the new one only when every other is busy), so open connections stay
  within the cap and the descriptors behind it.

A request being handled (a download to a slow reader, an upload) is never cut by these; its
own timeouts apply (`idle_timeout`, and `send_timeout`: a response whose writes wait that long
for a client that takes no bytes has its connection aborted, `gateway.relay.SendWatch`).

`Runner` is aiohttp's `web.AppRunner` serving through `Server`, whose connections are
`_Connection`s: the stock request handler, which reports when a request starts and when its
response has been sent.
"""

from __future__ import annotations

import asyncio
import itertools
import resource
from collections import Counter
from collections.abc import Awaitable, Callable, Hashable
from dataclasses import dataclass
from typing import Any, Final, Generic, TypeVar

from aiohttp import web
from aiohttp.abc import AbstractStreamWriter
from aiohttp.http_parser import RawRequestMessage
from aiohttp.streams import StreamReader

from gateway.relay import SendWatch, acked
from gateway.settings import ENV_PREFIX, Settings, SettingsError

# Descriptors a worker needs besides client connections and storage connections: listeners,
# the event loop, Redis or SQLite, the keyring and log files, control-plane S3 calls.
RESERVED_DESCRIPTORS: Final = 64
MIN_AUTO_CONNECTIONS: Final = 16
MAX_CONNECTIONS: Final = 10_000_000

# Why the gateway closed a connection (the `reason` label of its metric).
HEADER_TIMEOUT: Final = "header_timeout"
KEEPALIVE_TIMEOUT: Final = "keepalive_timeout"
OVER_CAPACITY: Final = "over_capacity"
SEND_TIMEOUT: Final = "send_timeout"
CLOSE_REASONS: Final = (HEADER_TIMEOUT, KEEPALIVE_TIMEOUT, OVER_CAPACITY, SEND_TIMEOUT)


@dataclass(frozen=True, slots=True)
class Limits:
    header_timeout: float
    keepalive_timeout: float
    max_connections: int
    send_timeout: float = 60.0  # `limits()` gives the setting's; this is its default too


def open_file_limit() -> int:
    """This process's RLIMIT_NOFILE (the soft limit, the one `accept` runs into)."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    return MAX_CONNECTIONS if soft == resource.RLIM_INFINITY else soft


def auto_cap(open_files: int, origin_connections: int) -> int:
    """`max_connections = auto`: what the open-file limit leaves once storage connections (at
    most `origin_connections` in use) and the fixed reserve have theirs."""
    return min(open_files - origin_connections - RESERVED_DESCRIPTORS, MAX_CONNECTIONS)


def limits(settings: Settings, open_files: int | None = None) -> Limits:
    """The limits for `settings` in this process (`open_files`: its RLIMIT_NOFILE)."""
    group = settings.connections
    cap = group.max_connections
    if cap is None:
        files = open_file_limit() if open_files is None else open_files
        cap = auto_cap(files, settings.s3.connections)
        if cap < MIN_AUTO_CONNECTIONS:
            raise SettingsError(
                f"{ENV_PREFIX}MAX_CONNECTIONS: auto leaves {cap} client connections (the "
                f"open-file limit {files} minus {ENV_PREFIX}ORIGIN_CONNECTIONS "
                f"{settings.s3.connections} minus {RESERVED_DESCRIPTORS} reserved); raise the "
                "limit (ulimit -n, LimitNOFILE=), lower ORIGIN_CONNECTIONS or set MAX_CONNECTIONS"
            )
    return Limits(group.header_timeout, group.keepalive_timeout, cap, settings.timeouts.send)


C = TypeVar("C", bound=Hashable)


class IdleFirst(Generic[C]):
    """Which connections to close past the cap: the one idle the longest first, never one
    whose request is being handled. A connection is idle from its opening, and from the end of
    each response until its next request starts."""

    def __init__(self, cap: int) -> None:
        self.cap = cap
        self._idle: dict[C, None] = {}  # in the order they became idle: longest idle first
        self._busy: set[C] = set()

    def __len__(self) -> int:
        return len(self._idle) + len(self._busy)

    def is_idle(self, connection: C) -> bool:
        return connection in self._idle

    def opened(self, connection: C) -> list[C]:
        """Count a new (idle) connection; returns those to close now to stay within the cap,
        which they no longer count against."""
        self._idle[connection] = None
        surplus = len(self) - self.cap
        evicted = list(itertools.islice(self._idle, max(surplus, 0)))
        for victim in evicted:
            del self._idle[victim]
        return evicted

    def started(self, connection: C) -> bool:
        """A request is being handled on `connection`; False if it is not counted (closed)."""
        if connection not in self._idle:
            return False
        del self._idle[connection]
        self._busy.add(connection)
        return True

    def finished(self, connection: C) -> bool:
        """Its response was sent: idle again, now the most recently idle."""
        if connection not in self._busy:
            return False
        self._busy.discard(connection)
        self._idle[connection] = None
        return True

    def closed(self, connection: C) -> None:
        self._idle.pop(connection, None)
        self._busy.discard(connection)


class Guard:
    """Applies `Limits` to one server's connections: the cap and the idle deadlines."""

    def __init__(self, limits: Limits) -> None:
        self.limits = limits
        self.policy: IdleFirst[web.RequestHandler] = IdleFirst(limits.max_connections)
        self.closed: Counter[str] = Counter()  # connections the gateway closed, by reason
        # An idle connection's deadline (the loop's clock) and what passing it means. Busy
        # connections have none.
        self._deadlines: dict[web.RequestHandler, tuple[float, str]] = {}
        # At most one timer per connection, due at or before its deadline. A response moves
        # the deadline without touching the timer (a timer made and cancelled per request
        # was a measurable share of one); a timer that finds the deadline later re-arms.
        self._timers: dict[web.RequestHandler, asyncio.TimerHandle] = {}
        self._loop: asyncio.AbstractEventLoop | None = None

    def __len__(self) -> int:
        return len(self.policy)

    def opened(self, connection: web.RequestHandler) -> None:
        for victim in self.policy.opened(connection):
            self._close(victim, OVER_CAPACITY)
        if self.policy.is_idle(connection):
            self._arm(connection, self.limits.header_timeout, HEADER_TIMEOUT)

    def started(self, connection: web.RequestHandler) -> None:
        if self.policy.started(connection):
            self._deadlines.pop(connection, None)  # its timer, if any, will find no deadline

    def finished(self, connection: web.RequestHandler) -> None:
        if self.policy.finished(connection):
            self._arm(connection, self.limits.keepalive_timeout, KEEPALIVE_TIMEOUT)

    def stalled(self, connection: web.RequestHandler) -> None:
        """`connection`'s client took no bytes for `send_timeout`; it is being aborted."""
        self.closed[SEND_TIMEOUT] += 1

    def lost(self, connection: web.RequestHandler) -> None:
        self.policy.closed(connection)
        self._disarm(connection)

    def _arm(self, connection: web.RequestHandler, seconds: float, reason: str) -> None:
        loop = self._loop
        if loop is None:
            loop = self._loop = asyncio.get_running_loop()
        deadline = loop.time() + seconds
        self._deadlines[connection] = (deadline, reason)
        timer = self._timers.get(connection)
        if timer is not None and timer.when() <= deadline:
            return  # it fires first, and re-arms for the deadline
        if timer is not None:
            timer.cancel()
        self._timers[connection] = loop.call_at(deadline, self._expired, connection)

    def _disarm(self, connection: web.RequestHandler) -> None:
        self._deadlines.pop(connection, None)
        timer = self._timers.pop(connection, None)
        if timer is not None:
            timer.cancel()

    def _expired(self, connection: web.RequestHandler) -> None:
        del self._timers[connection]
        due = self._deadlines.get(connection)
        if due is None:  # busy now: its response will arm it again
            return
        deadline, reason = due
        assert self._loop is not None
        if self._loop.time() < deadline:  # a response since moved the deadline
            self._timers[connection] = self._loop.call_at(deadline, self._expired, connection)
        elif self.policy.is_idle(connection):
            self.policy.closed(connection)
            self._close(connection, reason)

    def _close(self, connection: web.RequestHandler, reason: str) -> None:
        self._disarm(connection)
        self.closed[reason] += 1
        connection.force_close()  # what aiohttp's own keep-alive expiry does


CONNECTIONS: Final = web.AppKey("connections", Guard)
Handler = Callable[[web.BaseRequest], Awaitable[web.StreamResponse]]
#: The app's own request handler, if it has one that stands for `Application._handle` (and
#: its router): what `Runner` serves the app with, unless the app has middlewares.
REQUEST_HANDLER: Final[web.AppKey[Handler]] = web.AppKey("request_handler")

_Factory = Callable[
    [
        RawRequestMessage,
        StreamReader,
        web.RequestHandler,
        AbstractStreamWriter,
        "asyncio.Task[None]",
    ],
    web.BaseRequest,
]


class _Connection(web.RequestHandler):
    """aiohttp's request handler, reporting the end of each response to the guard, and
    aborting the connection when a response's writes wait `send_timeout` for a client that
    takes nothing. The transport (TCP or TLS) pauses the protocol's writing when its buffer
    passes the high-water mark, so the send timeout is watched only then: a small response,
    or a client keeping up, costs nothing."""

    __slots__ = ("_guard", "_send_watch", "send_timed_out")

    def __init__(self, manager: web.Server, *, guard: Guard, **options: Any) -> None:
        super().__init__(manager, **options)
        self._guard = guard
        self._send_watch: SendWatch | None = None
        self.send_timed_out = False

    async def finish_response(
        self, request: web.BaseRequest, resp: web.StreamResponse, start_time: float | None
    ) -> tuple[web.StreamResponse, bool]:
        try:
            return await super().finish_response(request, resp, start_time)
        finally:
            self._guard.finished(self)

    def pause_writing(self) -> None:
        super().pause_writing()
        watch = self._send_watch
        if watch is None:
            watch = self._send_watch = SendWatch(
                self._loop, self._guard.limits.send_timeout, self._acked, self.send_stalled
            )
        watch.waiting()

    def resume_writing(self) -> None:
        super().resume_writing()
        if self._send_watch is not None:
            self._send_watch.resumed()

    def connection_lost(self, exc: BaseException | None) -> None:
        if self._send_watch is not None:
            self._send_watch.cancel()
        super().connection_lost(exc)

    def send_stalled(self) -> None:
        """The client took nothing for `send_timeout` (seen here, or by a relay writing to its
        socket): count it once and abort the connection, so the response's pending write
        fails and the handler lets go of storage and its stream slot."""
        if self.send_timed_out:
            return
        self.send_timed_out = True
        self._guard.stalled(self)
        if self.transport is not None:
            self.transport.abort()

    def _acked(self) -> int | None:
        transport = self.transport
        return None if transport is None else acked(transport.get_extra_info("socket"))


def send_stalled(request: web.BaseRequest) -> bool:
    """Whether `request`'s connection was aborted by the send timeout."""
    protocol = request.protocol
    return isinstance(protocol, _Connection) and protocol.send_timed_out


def abort_stalled(request: web.BaseRequest) -> None:
    """A relay found `request`'s client stalled: abort its connection, counted as a send
    timeout where the guard watches it."""
    protocol = request.protocol
    if isinstance(protocol, _Connection):
        protocol.send_stalled()
    elif request.transport is not None:
        request.transport.abort()


class Server(web.Server):
    """aiohttp's low-level server, whose connections the guard watches."""

    def __init__(
        self,
        handler: Callable[[web.BaseRequest], Awaitable[web.StreamResponse]],
        *,
        guard: Guard,
        request_factory: _Factory | None = None,
        handler_cancellation: bool = False,
        **options: Any,
    ) -> None:
        super().__init__(
            handler, request_factory=request_factory, handler_cancellation=handler_cancellation
        )
        self.guard = guard
        # aiohttp's own keep-alive timer stays a backstop behind the guard's deadlines.
        limit = guard.limits
        options["keepalive_timeout"] = 2 * max(limit.header_timeout, limit.keepalive_timeout)
        self._options = options
        self._event_loop = asyncio.get_running_loop()
        make_request = self.request_factory

        def request_started(
            message: RawRequestMessage,
            payload: StreamReader,
            protocol: web.RequestHandler,
            writer: AbstractStreamWriter,
            task: asyncio.Task[None],
        ) -> web.BaseRequest:
            guard.started(protocol)
            return make_request(message, payload, protocol, writer, task)

        self.request_factory = request_started

    def __call__(self) -> web.RequestHandler:
        return _Connection(self, guard=self.guard, loop=self._event_loop, **self._options)

    def connection_made(self, handler: web.RequestHandler, transport: asyncio.Transport) -> None:
        super().connection_made(handler, transport)
        self.guard.opened(handler)

    def connection_lost(
        self, handler: web.RequestHandler, exc: BaseException | None = None
    ) -> None:
        super().connection_lost(handler, exc)
        self.guard.lost(handler)


class Runner(web.AppRunner):
    """`web.AppRunner` serving the app through `Server`, under `limits`. The guard is put in
    the app (`CONNECTIONS`) before start-up, where the metrics find it; the app's
    `REQUEST_HANDLER`, if it has one, serves its requests."""

    def __init__(
        self,
        app: web.Application,
        *,
        limits: Limits,
        handle_signals: bool = False,
        shutdown_timeout: float = 60.0,
        handler_cancellation: bool = False,
        **options: Any,
    ) -> None:
        super().__init__(
            app,
            handle_signals=handle_signals,
            shutdown_timeout=shutdown_timeout,
            handler_cancellation=handler_cancellation,
            **options,
        )
        self.guard = Guard(limits)
        self._handler_cancellation = handler_cancellation
        self._options = options

    async def _make_server(self) -> web.Server:
        self.app[CONNECTIONS] = self.guard
        made = await super()._make_server()  # starts the app, whose request handler it has
        handler = made.request_handler
        if REQUEST_HANDLER in self.app and not self.app.middlewares:
            handler = self.app[REQUEST_HANDLER]
        return Server(
            handler,
            guard=self.guard,
            request_factory=made.request_factory,
            handler_cancellation=self._handler_cancellation,
            **self._options,
        )
