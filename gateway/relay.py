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
import os
import socket
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

    async def run(self, body: SocketBody) -> None:
        """Send the whole body, then call `body.finished()`. Raises OriginError or
        OriginTimeout if storage fails or goes silent, ConnectionError if the client goes
        away. The relay's descriptors are closed when it returns, however it does."""
        try:
            if body.remaining:  # onto our own descriptor: cannot run out
                os.dup2(body.fd, self._source, inheritable=False)
            waiter = _Waiter(self._source, self._sink)
            try:
                for chunk in body.received:
                    await self._write(chunk, waiter)
                if body.remaining:
                    await self._splice(body.remaining, body.idle_timeout, waiter)
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
                await waiter.wait(read=False, write=True, idle=None)
                continue
            except OSError as exc:
                raise _client_error(exc) from None
            self.sent += written
            view = view[written:]

    async def _splice(self, remaining: int, idle: float, waiter: _Waiter) -> None:
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
                await waiter.wait(
                    read=reading, write=in_pipe > 0, idle=idle if not in_pipe else None
                )


class Sender:
    """Writes a body straight to a client socket: bytes with write(2), file ranges with
    sendfile(2) (a disk cache hit: the page cache to the socket, never through Python). Works
    on a duplicate of the socket, like `Relay`; the caller flushed the response head."""

    def __init__(self, sink: int) -> None:
        self._sink = sink
        self._waiter = _Waiter(sink, sink)
        self.sent = 0
        self.sendfiled = 0

    @classmethod
    def open(cls, client_fd: int) -> Sender | None:
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
        return cls(sink)

    async def write(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            try:
                written = os.write(self._sink, view)
            except BlockingIOError:
                await self._waiter.wait(read=False, write=True, idle=None)
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
                await self._waiter.wait(read=False, write=True, idle=None)
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
    on every iteration while its condition holds."""

    def __init__(self, source: int, sink: int) -> None:
        self._source = source
        self._sink = sink
        self._loop = asyncio.get_running_loop()

    async def wait(self, *, read: bool, write: bool, idle: float | None) -> None:
        loop = self._loop
        future: asyncio.Future[Any] = loop.create_future()
        if read:
            loop.add_reader(self._source, _wake, future)
        if write:
            loop.add_writer(self._sink, _wake, future)
        timer = None if idle is None else loop.call_later(idle, _wake, future, _TIMED_OUT)
        try:
            await future
        finally:
            if timer is not None:
                timer.cancel()
            if read:
                loop.remove_reader(self._source)
            if write:
                loop.remove_writer(self._sink)
        if timer is not None and future.result() is _TIMED_OUT:
            raise OriginTimeout(f"storage sent nothing for {idle}s mid-stream")

    def stop(self) -> None:
        """Remove any watch (only left if a wait was cancelled) before descriptors close."""
        self._loop.remove_reader(self._source)
        self._loop.remove_writer(self._sink)


_TIMED_OUT: Any = object()


def _wake(future: asyncio.Future[Any], value: Any = None) -> None:
    if not future.done():
        future.set_result(value)


def _client_error(exc: OSError) -> ConnectionError:
    if isinstance(exc, ConnectionError):
        return exc
    return ConnectionResetError(exc.errno, f"client socket failed: {os.strerror(exc.errno or 0)}")
