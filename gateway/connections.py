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

The connections (`gateway.http_server.Connection`) report when a request starts, when its
response has been sent, and when they are lost.
"""

from __future__ import annotations

import asyncio
import itertools
import resource
from collections import Counter
from collections.abc import Hashable
from dataclasses import dataclass
from typing import Final, Generic, Protocol, TypeVar

from aiohttp import web

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


class Closable(Hashable, Protocol):
    def force_close(self) -> None:
        """Close the connection (it is idle: no request is being handled on it)."""


class Guard:
    """Applies `Limits` to one server's connections: the cap and the idle deadlines."""

    def __init__(self, limits: Limits) -> None:
        self.limits = limits
        self.policy: IdleFirst[Closable] = IdleFirst(limits.max_connections)
        self.closed: Counter[str] = Counter()  # connections the gateway closed, by reason
        # An idle connection's deadline (the loop's clock) and what passing it means. Busy
        # connections have none.
        self._deadlines: dict[Closable, tuple[float, str]] = {}
        # At most one timer per connection, due at or before its deadline. A response moves
        # the deadline without touching the timer (a timer made and cancelled per request
        # was a measurable share of one); a timer that finds the deadline later re-arms.
        self._timers: dict[Closable, asyncio.TimerHandle] = {}
        self._loop: asyncio.AbstractEventLoop | None = None

    def __len__(self) -> int:
        return len(self.policy)

    def opened(self, connection: Closable) -> None:
        for victim in self.policy.opened(connection):
            self._close(victim, OVER_CAPACITY)
        if self.policy.is_idle(connection):
            self._arm(connection, self.limits.header_timeout, HEADER_TIMEOUT)

    def started(self, connection: Closable) -> None:
        if self.policy.started(connection):
            self._deadlines.pop(connection, None)  # its timer, if any, will find no deadline

    def finished(self, connection: Closable) -> None:
        if self.policy.finished(connection):
            self._arm(connection, self.limits.keepalive_timeout, KEEPALIVE_TIMEOUT)

    def stalled(self, connection: Closable) -> None:
        """`connection`'s client took no bytes for `send_timeout`; it is being aborted."""
        self.closed[SEND_TIMEOUT] += 1

    def lost(self, connection: Closable) -> None:
        self.policy.closed(connection)
        self._disarm(connection)

    def _arm(self, connection: Closable, seconds: float, reason: str) -> None:
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

    def _disarm(self, connection: Closable) -> None:
        self._deadlines.pop(connection, None)
        timer = self._timers.pop(connection, None)
        if timer is not None:
            timer.cancel()

    def _expired(self, connection: Closable) -> None:
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

    def _close(self, connection: Closable, reason: str) -> None:
        self._disarm(connection)
        self.closed[reason] += 1
        connection.force_close()


CONNECTIONS: Final = web.AppKey("connections", Guard)
