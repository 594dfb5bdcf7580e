"""(i): a forwarder that counts the HTTP requests a peer sends to the storage.

Put between a cache and the storage (the cache's storage endpoint is the forwarder's port),
it passes bytes both ways unchanged and reads the request heads going to the storage: the
method, the target and the Range header of each, so that a run can say how often each slice
of an object was fetched. Bodies sent to the storage are skipped by their Content-Length
(reads have none); a chunked request body is refused, as no peer here sends one.

It runs its own event loop in a thread, so the synchronous harness and the peers' own
processes can use it alike. Loopback only; not a product component.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Final

MAX_HEAD: Final = 64 * 1024
READ_BYTES: Final = 256 * 1024


class HeadError(ValueError):
    """A request stream this forwarder cannot read (then the connection is closed)."""


@dataclass(frozen=True)
class Request:
    method: str
    target: str  # path and query, as sent
    range: str | None  # the Range header, if any

    @property
    def path(self) -> str:
        return self.target.partition("?")[0]


class HeadReader:
    """Splits one connection's bytes towards the storage into requests, however the bytes
    are cut into reads."""

    def __init__(self) -> None:
        self._buffer = bytearray()
        self._body_left = 0

    def feed(self, data: bytes) -> list[Request]:
        """The requests whose heads are complete with `data`."""
        self._buffer += data
        found: list[Request] = []
        while True:
            if self._body_left:
                skipped = min(self._body_left, len(self._buffer))
                del self._buffer[:skipped]
                self._body_left -= skipped
                if self._body_left:
                    return found
            end = self._buffer.find(b"\r\n\r\n")
            if end < 0:
                if len(self._buffer) > MAX_HEAD:
                    raise HeadError("a request head longer than 64 KiB")
                return found
            head = bytes(self._buffer[:end]).decode("latin-1")
            del self._buffer[: end + 4]
            request, self._body_left = _parse(head)
            found.append(request)


def _parse(head: str) -> tuple[Request, int]:
    """(the request, its body's length) from a head without its final blank line."""
    line, *fields = head.split("\r\n")
    parts = line.split(" ")
    if len(parts) != 3 or not parts[2].startswith("HTTP/"):
        raise HeadError(f"not a request line: {line[:80]!r}")
    headers: dict[str, str] = {}
    for entry in fields:
        name, sep, value = entry.partition(":")
        if not sep:
            raise HeadError(f"not a header line: {entry[:80]!r}")
        headers[name.strip().lower()] = value.strip()
    if "chunked" in headers.get("transfer-encoding", "").lower():
        raise HeadError("a chunked request body")
    length = headers.get("content-length", "0")
    if not length.isdigit():
        raise HeadError(f"Content-Length {length[:20]!r}")
    return Request(parts[0], parts[1], headers.get("range")), int(length)


class CountingForwarder:
    """Listens on a loopback port and forwards to `target` (host, port), recording every
    request. `requests` may be read at any time; a request is recorded before its head is
    passed on, so once its answer arrived, it is in the list."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.port = 0
        self._requests: list[Request] = []
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopped: asyncio.Event | None = None
        self._listening = threading.Event()
        self._thread = threading.Thread(target=self._run, name="counting-forwarder", daemon=True)
        self._error: BaseException | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self.connections = 0  # accepted so far

    @property
    def host(self) -> str:
        """host:port, for a Host header or an endpoint URL."""
        return f"127.0.0.1:{self.port}"

    @property
    def requests(self) -> list[Request]:
        with self._lock:
            return list(self._requests)

    def start(self) -> None:
        self._thread.start()
        self._listening.wait()
        if self._error is not None:
            raise self._error

    def stop(self) -> None:
        if self._loop is not None and self._stopped is not None:
            self._loop.call_soon_threadsafe(self._stopped.set)
        self._thread.join()

    def _run(self) -> None:
        try:
            asyncio.run(self._serve())
        except BaseException as exc:  # reported to start(), or lost at shutdown
            self._error = exc
            self._listening.set()

    async def _serve(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stopped = asyncio.Event()
        server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = server.sockets[0].getsockname()[1]
        self._listening.set()
        await self._stopped.wait()
        server.close()
        for writer in list(self._writers):  # idle keep-alive connections too
            writer.close()
        await server.wait_closed()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
        except OSError:
            writer.close()
            return
        both = (writer, up_writer)
        self._writers.update(both)
        try:
            await asyncio.gather(
                self._pipe(reader, up_writer, both, HeadReader()),
                self._pipe(up_reader, writer, both, None),
            )
        finally:
            self._writers.difference_update(both)

    async def _pipe(
        self,
        source: asyncio.StreamReader,
        sink: asyncio.StreamWriter,
        both: tuple[asyncio.StreamWriter, asyncio.StreamWriter],
        heads: HeadReader | None,
    ) -> None:
        try:
            while data := await source.read(READ_BYTES):
                if heads is not None:
                    found = heads.feed(data)
                    with self._lock:
                        self._requests.extend(found)
                sink.write(data)
                await sink.drain()
        except (OSError, HeadError, asyncio.CancelledError):
            pass
        finally:
            for writer in both:
                writer.close()


@contextlib.contextmanager
def counting_forwarder(target: tuple[str, int]) -> Iterator[CountingForwarder]:
    """A started forwarder to `target`, stopped on the way out."""
    forwarder = CountingForwarder(target)
    forwarder.start()
    try:
        yield forwarder
    finally:
        forwarder.stop()
