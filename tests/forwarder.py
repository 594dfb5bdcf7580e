"""A TCP forwarder that counts: put it between the gateway and storage to see how many
connections the gateway opens, which requests it sends, and how many bytes storage sends back."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass


@dataclass(frozen=True)
class SeenRequest:
    """One HTTP request as it went to the target: its request line and headers."""

    method: str
    target: str
    headers: dict[str, str]  # names in lower case

    @property
    def path(self) -> str:
        return self.target.partition("?")[0]


class _RequestReader:
    """Splits one connection's bytes towards the target into HTTP/1.1 requests. Bodies are
    skipped by their Content-Length; a chunked body cannot be delimited here, so the rest of
    such a connection is not parsed (`lost` says so)."""

    def __init__(self) -> None:
        self._buffer = b""
        self._body_left = 0
        self.lost = False

    def feed(self, data: bytes) -> list[SeenRequest]:
        if self.lost:
            return []
        self._buffer += data
        seen: list[SeenRequest] = []
        while True:
            if self._body_left:
                skipped = min(self._body_left, len(self._buffer))
                self._body_left -= skipped
                self._buffer = self._buffer[skipped:]
                if self._body_left:
                    return seen
            head, found, rest = self._buffer.partition(b"\r\n\r\n")
            if not found:
                return seen
            self._buffer = rest
            line, *fields = head.decode("latin-1").split("\r\n")
            method, target, _ = line.split(" ", 2)
            headers = {}
            for field in fields:
                name, _, value = field.partition(":")
                headers[name.strip().lower()] = value.strip()
            seen.append(SeenRequest(method, target, headers))
            if "transfer-encoding" in headers:
                self.lost = True
                return seen
            self._body_left = int(headers.get("content-length", "0"))


class CountingForwarder:
    """Forwards every connection accepted on a loopback port to `target_port`, counting the
    connections (`accepted`), the requests sent through them (`requests`, HTTP/1.1 parsed from
    the stream) and the bytes forwarded back from the target (`from_target`).

    A byte is counted before it is passed on, and a request once its head is complete, before
    it is passed on: once the gateway has read an answer, that answer's bytes and the request
    it answers are in the counts, so no waiting is needed before reading them."""

    def __init__(self, target_port: int, host: str = "127.0.0.1") -> None:
        self.host = host
        self.target_port = target_port
        self.accepted = 0
        self.from_target = 0
        self.requests: list[SeenRequest] = []
        self.unparsed = 0  # connections whose requests could not all be told apart
        self._server: asyncio.Server | None = None
        self._pipes: set[asyncio.Task[None]] = set()
        self._silent = False
        self._hold_at: int | None = None
        self._released = asyncio.Event()
        self._holding = asyncio.Event()

    @property
    def port(self) -> int:
        assert self._server is not None, "start() was not awaited"
        port: int = self._server.sockets[0].getsockname()[1]
        return port

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def requests_for(self, path: str, method: str = "GET") -> list[SeenRequest]:
        """The requests seen for one object path (as sent to storage, percent-encoded)."""
        return [r for r in self.requests if r.path == path and r.method == method]

    def hold_at(self, count: int) -> asyncio.Event:
        """Pass on bytes from the target until `count` have been in all, then hold the rest
        until `release()`; returns an event set once the hold began."""
        self._hold_at = count
        self._released.clear()
        self._holding.clear()
        return self._holding

    def release(self) -> None:
        self._hold_at = None
        self._released.set()

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._accept, self.host, 0)

    async def cut(self) -> None:
        """Break every connection forwarded so far; later ones reach nothing and get no answer
        (storage alive but silent), until `close()` makes the port refuse them outright."""
        self._silent = True
        await self._stop_pipes()

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        await self._stop_pipes()
        if self._server is not None:
            await self._server.wait_closed()

    async def _stop_pipes(self) -> None:
        for task in list(self._pipes):
            task.cancel()
        await asyncio.gather(*self._pipes, return_exceptions=True)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.accepted += 1
        if self._silent:
            task = asyncio.create_task(self._swallow(reader, writer))
            self._pipes.add(task)
            task.add_done_callback(self._pipes.discard)
            return
        try:
            up_reader, up_writer = await asyncio.open_connection(self.host, self.target_port)
        except OSError:
            writer.close()
            return
        both = (writer, up_writer)
        for pipe in (
            self._pipe(reader, up_writer, both, requests=_RequestReader()),
            self._pipe(up_reader, writer, both, counted=True),
        ):
            task = asyncio.create_task(pipe)
            self._pipes.add(task)
            task.add_done_callback(self._pipes.discard)

    async def _swallow(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while await reader.read(65536):
                pass
        except (OSError, asyncio.CancelledError):
            pass
        finally:
            writer.close()

    async def _pipe(
        self,
        source: asyncio.StreamReader,
        sink: asyncio.StreamWriter,
        both: tuple[asyncio.StreamWriter, asyncio.StreamWriter],
        counted: bool = False,
        requests: _RequestReader | None = None,
    ) -> None:
        try:
            while data := await source.read(65536):
                hold = self._hold_at if counted else None
                if hold is not None and self.from_target + len(data) > hold:
                    passed = max(0, hold - self.from_target)
                    self.from_target += passed
                    sink.write(data[:passed])
                    await sink.drain()
                    self._holding.set()
                    await self._released.wait()
                    data = data[passed:]
                if counted:
                    self.from_target += len(data)
                if requests is not None and not requests.lost:
                    self.requests.extend(requests.feed(data))
                    self.unparsed += requests.lost
                sink.write(data)
                await sink.drain()
        except (OSError, asyncio.CancelledError):
            pass
        finally:
            for writer in both:
                writer.close()


@contextlib.asynccontextmanager
async def counting_forwarder(target_port: int) -> AsyncIterator[CountingForwarder]:
    forwarder = CountingForwarder(target_port)
    await forwarder.start()
    try:
        yield forwarder
    finally:
        await forwarder.close()
