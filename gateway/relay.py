"""Zero-copy relay of a large object body: storage socket -> pipe -> client socket, by splice(2).

Why: once a request is verified, the gateway's remaining cost on a large object is copying
every byte from the kernel into Python and back out again (measured on a 256 MiB GET: about a
third of a core per GiB/s). `splice` moves references to the received pages into a pipe and
from the pipe into the client's socket, so the bytes never enter user space.

Only for plain TCP on both sides (TLS must be decrypted and encrypted in user space) on Linux;
otherwise the handler streams chunks as before. Both sockets belong to their transports: the
relay works on duplicates of their descriptors (uvloop refuses to watch a transport's own
descriptor) and closes those and its pipe whatever happens. The caller must have flushed the
response head (an empty transport write buffer), since bytes spliced into the socket overtake
anything still buffered.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import functools
import os
import socket
import sys
from collections.abc import Callable
from typing import Any

from gateway.storage import OriginError, OriginTimeout, SocketBody

AVAILABLE = hasattr(os, "splice") and hasattr(fcntl, "F_SETPIPE_SZ")
MIN_BYTES = 1024 * 1024  # below this the syscalls to set the relay up are not paid back
# Pipe sizes to ask for, largest first: 1 MiB (fs.pipe-max-size, the most an unprivileged
# process may have) halves the system time per GiB against the 64 KiB default, measured. A
# user's pipes share fs.pipe-user-pages-soft (64 MiB by default); past it a smaller size is
# tried, and past the quota the kernel hands out two-page pipes, through which a relay would
# crawl: then copying is faster.
PIPE_BYTES = (1024 * 1024, 256 * 1024)
MIN_PIPE_BYTES = 64 * 1024
_FLAGS = getattr(os, "SPLICE_F_MOVE", 0) | getattr(os, "SPLICE_F_NONBLOCK", 0)
# Unsent bytes a `Sender` lets queue in the client's socket (TCP_NOTSENT_LOWAT; bytes in
# flight are not limited, so a long fat path still fills). Without a bound, sendfile(2) queues
# megabytes the receiver has no window for; each window update the receiver sends then pushes
# them out inside the *receiver's* system call (on loopback, its whole TCP receive path too).
# Bounded, the sender pushes them in its own calls. Measured with wrk -c1 on a warm 256 MiB disk
# hit: wrk's CPU per GiB 650-700 -> 320-370 ms, the gateway's 150 -> 350 ms, on another core.
NOTSENT_LOWAT = 512 * 1024
_TCP_NOTSENT_LOWAT = getattr(socket, "TCP_NOTSENT_LOWAT", 25)  # Linux's number


_TCP_INFO = getattr(socket, "TCP_INFO", None)
_BYTES_ACKED = slice(120, 128)  # struct tcp_info's tcpi_bytes_acked (Linux 4.1+), a u64


class ClientStalled(ConnectionError):
    """The client took no bytes for `send_timeout`: its connection is to be closed. Never an
    OriginTimeout, which is storage's silence."""


def acked(sock: Any) -> int | None:
    """Bytes of ours the client's TCP has acknowledged so far (grows as it reads), or None
    where the kernel does not say (not TCP, not Linux)."""
    if _TCP_INFO is None:
        return None
    try:
        info = sock.getsockopt(socket.IPPROTO_TCP, _TCP_INFO, 256)
    except (OSError, AttributeError):
        return None
    if len(info) < _BYTES_ACKED.stop:
        return None
    return int.from_bytes(info[_BYTES_ACKED], sys.byteorder)


def acked_fd(fd: int) -> int | None:
    """`acked` of a socket descriptor the caller owns."""
    sock = socket.socket(fileno=fd)
    try:
        return acked(sock)
    finally:
        sock.detach()


class SendWatch:
    """The send timeout of one client connection, nginx's `send_timeout`: `on_stall` runs once
    a write has waited `seconds` for the client's socket and the client acknowledged no bytes
    since the last look. Waits are marked by `waiting()` and `resumed()`; they happen only
    when the socket is full, so a client keeping up costs nothing. A wait moves the deadline
    without touching the timer (one per `seconds` at most, not one per wait); a timer that
    finds the deadline later re-arms. Why the acknowledgements: the kernel takes more bytes
    only once a third of a large send buffer is free, so a slow reader can leave the socket
    full for longer than `seconds` while it keeps reading."""

    __slots__ = ("_deadline", "_loop", "_mark", "_on_stall", "_probe", "_timer", "seconds")

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        seconds: float,
        probe: Callable[[], int | None],
        on_stall: Callable[[], None],
    ) -> None:
        self.seconds = seconds
        self._loop = loop
        self._probe = probe  # `acked` of the client's socket
        self._on_stall = on_stall
        self._deadline: float | None = None  # while a write waits
        self._timer: asyncio.TimerHandle | None = None
        self._mark: int | None = None

    def waiting(self) -> None:
        """A write waits for the client's socket, from now unless it already did."""
        if self._deadline is not None:
            return
        self._deadline = deadline = self._loop.time() + self.seconds
        if self._timer is None:
            self._mark = self._probe()
            self._timer = self._loop.call_at(deadline, self._expired)

    def resumed(self) -> None:
        """The socket takes writes again: the timer, if any, will find no wait."""
        self._deadline = None

    def cancel(self) -> None:
        self._deadline = None
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _expired(self) -> None:
        self._timer = None
        deadline = self._deadline
        if deadline is None:
            return
        now = self._loop.time()
        mark, self._mark = self._mark, self._probe()
        if now >= deadline:
            if mark is None or self._mark is None or self._mark <= mark:
                self._deadline = None
                self._on_stall()
                return
            self._deadline = deadline = now + self.seconds  # it reads, slowly: keep waiting
        self._timer = self._loop.call_at(deadline, self._expired)


def plain_socket(transport: Any) -> int | None:
    """The descriptor of a transport's socket if a relay may write to it, else None."""
    if not AVAILABLE or transport is None or transport.is_closing():
        return None
    if transport.get_extra_info("sslcontext") is not None:
        return None
    sock = transport.get_extra_info("socket")
    if sock is None or sock.type != socket.SOCK_STREAM:
        return None
    fd: int = sock.fileno()
    return fd if fd >= 0 else None


class Relay:
    """One body's relay. `sent` counts the body bytes handed to the client's socket, also
    when `run()` fails part-way. Made by `open()` before storage hands the body over, so that
    a process out of descriptors falls back to copying instead of breaking a response."""

    def __init__(
        self, sink: int, source: int, pipe_out: int, pipe_in: int, pipe_bytes: int
    ) -> None:
        self._sink = sink
        self._source = source  # a placeholder until run() puts the storage socket there
        self._pipe_out = pipe_out
        self._pipe_in = pipe_in
        self._open = True
        self.pipe_bytes = pipe_bytes
        self.sent = 0
        self.spliced = 0

    @classmethod
    def open(cls, client_fd: int) -> Relay | None:
        """Descriptors for a relay to `client_fd`; None if the process cannot get them."""
        opened: list[int] = []
        try:
            opened.append(os.dup(client_fd))
            opened.append(os.dup(client_fd))
            opened.extend(os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC))
        except OSError:
            for fd in opened:
                os.close(fd)
            return None
        for size in PIPE_BYTES:
            try:
                fcntl.fcntl(opened[3], fcntl.F_SETPIPE_SZ, size)
                break
            except OSError:  # EPERM: the user's pipe quota is (nearly) used up
                continue
        granted = fcntl.fcntl(opened[3], fcntl.F_GETPIPE_SZ)
        if granted < MIN_PIPE_BYTES:
            for fd in opened:
                os.close(fd)
            return None
        sink, source, pipe_out, pipe_in = opened
        return cls(sink, source, pipe_out, pipe_in, granted)

    async def run(self, body: SocketBody, *, send_timeout: float | None = None) -> None:
        """Send the whole body, then call `body.finished()`. Raises OriginError or
        OriginTimeout if storage fails or goes silent, ClientStalled if the client takes
        nothing for `send_timeout`, ConnectionError if it goes away. The relay's descriptors
        are closed when it returns, however it does."""
        try:
            if body.remaining:  # onto our own descriptor: cannot run out
                os.dup2(body.fd, self._source, inheritable=False)
            waiter = _Waiter(self._source, self._sink, body.idle_timeout, send_timeout)
            try:
                for chunk in body.received:
                    await self._write(chunk, waiter)
                if body.remaining:
                    await self._splice(body.remaining, waiter)
            finally:
                waiter.stop()
        finally:
            self.close()
        body.finished()

    def close(self) -> None:
        if self._open:
            self._open = False
            for fd in (self._sink, self._source, self._pipe_out, self._pipe_in):
                os.close(fd)

    async def _write(self, data: bytes, waiter: _Waiter) -> None:
        view = memoryview(data)
        while view:
            try:
                written = os.write(self._sink, view)
            except BlockingIOError:
                await waiter.wait(read=False, write=True)
                continue
            except OSError as exc:
                raise _client_error(exc) from None
            self.sent += written
            view = view[written:]

    async def _splice(self, remaining: int, waiter: _Waiter) -> None:
        source, sink, pipe_in, pipe_out = self._source, self._sink, self._pipe_in, self._pipe_out
        capacity = self.pipe_bytes
        in_pipe = 0
        # A pipe holds a number of page references, not of bytes: it can be full with fewer
        # than `capacity` bytes in it. Then reading waits until the client has taken some.
        pipe_full = False
        while remaining or in_pipe:
            moved = False
            if remaining and not pipe_full and in_pipe < capacity:
                try:
                    wanted = min(remaining, capacity - in_pipe)
                    count = os.splice(source, pipe_in, wanted, flags=_FLAGS)
                except BlockingIOError:
                    pipe_full = in_pipe > 0
                except OSError as exc:
                    raise OriginError(f"storage stream broke: {type(exc).__name__}") from None
                else:
                    if count == 0:
                        raise OriginError(f"storage closed with {remaining} bytes to go")
                    remaining -= count
                    in_pipe += count
                    moved = True
            if in_pipe:
                try:
                    count = os.splice(pipe_out, sink, in_pipe, flags=_FLAGS)
                except BlockingIOError:
                    pass
                except OSError as exc:
                    raise _client_error(exc) from None
                else:
                    in_pipe -= count
                    self.sent += count
                    self.spliced += count
                    pipe_full = False
                    moved = True
            if not moved:
                reading = bool(remaining) and not pipe_full and in_pipe < capacity
                await waiter.wait(read=reading, write=in_pipe > 0)


class Sender:
    """Writes a body straight to a client socket: bytes with write(2), file ranges with
    sendfile(2) (a disk cache hit: the page cache to the socket, never through Python). Works
    on a duplicate of the socket, like `Relay`; the caller flushed the response head. Raises
    ClientStalled if the client takes nothing for `send_timeout`."""

    def __init__(self, sink: int, *, send_timeout: float | None = None) -> None:
        self._sink = sink
        self._waiter = _Waiter(sink, sink, None, send_timeout)
        self.sent = 0
        self.sendfiled = 0

    @classmethod
    def open(cls, client_fd: int, *, send_timeout: float | None = None) -> Sender | None:
        try:
            sink = os.dup(client_fd)
        except OSError:
            return None
        with contextlib.suppress(OSError):  # an optimisation: without it the body still goes
            sock = socket.socket(fileno=sink)
            try:
                sock.setsockopt(socket.IPPROTO_TCP, _TCP_NOTSENT_LOWAT, NOTSENT_LOWAT)
            finally:
                sock.detach()
        return cls(sink, send_timeout=send_timeout)

    async def write(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            try:
                written = os.write(self._sink, view)
            except BlockingIOError:
                await self._waiter.wait(read=False, write=True)
                continue
            except OSError as exc:
                raise _client_error(exc) from None
            self.sent += written
            view = view[written:]

    async def sendfile(self, fd: int, offset: int, count: int) -> None:
        while count:
            try:
                written = os.sendfile(self._sink, fd, offset, count)
            except BlockingIOError:
                await self._waiter.wait(read=False, write=True)
                continue
            except OSError as exc:
                raise _client_error(exc) from None
            if written == 0:
                raise OriginError(f"a file ended {count} bytes early")
            offset += written
            count -= written
            self.sent += written
            self.sendfiled += written

    def close(self) -> None:
        self._waiter.stop()
        os.close(self._sink)


class _Waiter:
    """Waits until the source is readable or the sink writable. Watches are added and removed
    around each wait: the loop's watches are level-triggered, so one left in place would fire
    on every iteration while its condition holds. A wait for the sink is bounded by the send
    timeout (`SendWatch`), one for the source alone by storage's `idle` timeout; None: none."""

    def __init__(self, source: int, sink: int, idle: float | None, send: float | None) -> None:
        self._source = source
        self._sink = sink
        self._idle = idle
        self._loop = asyncio.get_running_loop()
        self._future: asyncio.Future[Any] | None = None
        self._stall: ClientStalled | None = None
        self._watch = (
            None
            if send is None
            else SendWatch(self._loop, send, functools.partial(acked_fd, sink), self._stalled)
        )

    async def wait(self, *, read: bool, write: bool) -> None:
        if self._stall is not None:  # the timer fired between waits
            raise self._stall
        loop = self._loop
        future: asyncio.Future[Any] = loop.create_future()
        self._future = future
        if read:
            loop.add_reader(self._source, _wake, future)
        if write:
            loop.add_writer(self._sink, _wake, future, _WRITABLE)
            if self._watch is not None:
                self._watch.waiting()  # from the first wait since the client last took bytes
        idle = None if write else self._idle
        timer = None if idle is None else loop.call_later(idle, _wake, future, _TIMED_OUT)
        try:
            woke = await future
        finally:
            self._future = None
            if timer is not None:
                timer.cancel()
            if read:
                loop.remove_reader(self._source)
            if write:
                loop.remove_writer(self._sink)
        if woke is _WRITABLE:
            if self._watch is not None:
                self._watch.resumed()
        elif woke is _TIMED_OUT:
            raise OriginTimeout(f"storage sent nothing for {idle}s mid-stream")
        elif woke is _STALLED:
            assert self._stall is not None
            raise self._stall

    def _stalled(self) -> None:
        assert self._watch is not None
        self._stall = ClientStalled(f"the client took nothing for {self._watch.seconds}s")
        if self._future is not None:
            _wake(self._future, _STALLED)

    def stop(self) -> None:
        """Remove any watch (only left if a wait was cancelled) before descriptors close."""
        if self._watch is not None:
            self._watch.cancel()
        self._loop.remove_reader(self._source)
        self._loop.remove_writer(self._sink)


_TIMED_OUT: Any = object()
_STALLED: Any = object()
_WRITABLE: Any = object()


def _wake(future: asyncio.Future[Any], value: Any = None) -> None:
    if not future.done():
        future.set_result(value)


def _client_error(exc: OSError) -> ConnectionError:
    if isinstance(exc, ConnectionError):
        return exc
    return ConnectionResetError(exc.errno, f"client socket failed: {os.strerror(exc.errno or 0)}")
