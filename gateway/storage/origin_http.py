"""A lean HTTP/1.1 keep-alive client for the one request shape the data path sends to storage.

Why not aiohttp's client: measured against SeaweedFS, aiohttp spends about 140 µs of CPU per
small GET, and these few lines about 50 µs, so it is the largest cost of a small-object request
after the signature check. It sends GET or HEAD with no body, reads a status line and headers,
and streams a `Content-Length` body on demand (the caller's pace is the backpressure). Anything
else (no length, chunked, `Connection: close`, an error status, a body not read to its end)
means the connection is not reused. Storage answers that aiohttp would accept but this does
not (an unreadable status line or header) are origin errors, never guesses.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections import deque

from multidict import CIMultiDict, CIMultiDictProxy

MAX_HEAD = 64 * 1024  # status line plus headers


class OriginProtocolError(Exception):
    """Storage's answer could not be read as HTTP/1.1 (or the connection broke)."""


class OriginResponse:
    def __init__(
        self,
        pool: ConnectionPool,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        status: int,
        headers: CIMultiDictProxy[str],
        body_length: int | None,
        reusable: bool,
    ) -> None:
        self._pool = pool
        self._reader = reader
        self._writer = writer
        self.status = status
        self.headers = headers
        self._remaining = body_length
        self._reusable = reusable and body_length is not None
        self._done = False

    async def read_chunk(self, size: int) -> bytes:
        """Up to `size` bytes of the body; b"" at its end. Raises OriginProtocolError if the
        connection ends early."""
        if self._remaining is None:
            raise OriginProtocolError("no Content-Length: the body cannot be delimited")
        if self._remaining == 0:
            return b""
        try:
            chunk = await self._reader.read(min(size, self._remaining))
        except OSError as exc:
            raise OriginProtocolError(f"connection broke: {type(exc).__name__}") from None
        if not chunk:
            raise OriginProtocolError(f"connection closed with {self._remaining} bytes to go")
        self._remaining -= len(chunk)
        return chunk

    def release(self) -> None:
        """Done with the response: the connection is pooled if the body was read whole."""
        if self._done:
            return
        self._done = True
        if self._reusable and self._remaining == 0:
            self._pool.put_back(self._reader, self._writer)
        else:
            self._writer.close()

    def close(self) -> None:
        """Abandon the response (and its connection) whatever was read."""
        if not self._done:
            self._done = True
            self._writer.close()


class ConnectionPool:
    """Idle keep-alive connections to one host, most recently used first."""

    def __init__(
        self,
        host: str,
        port: int,
        *,
        tls: bool,
        size: int,
        connect_timeout: float,
    ) -> None:
        self.host = host
        self.port = port
        self.size = size
        self.connect_timeout = connect_timeout
        self._ssl: ssl.SSLContext | None = ssl.create_default_context() if tls else None
        self._idle: deque[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = deque()
        self._closed = False

    async def request(self, method: str, target: str, headers: dict[str, str]) -> OriginResponse:
        """Send one request; the answer's head is read, the body is left to the caller.

        A pooled connection that the server closed while idle fails before any byte of the
        answer arrives; then the request (GET or HEAD: idempotent) goes once more on a new
        connection."""
        head = _request_head(method, target, headers)
        reused = self._take()
        if reused is not None:
            try:
                return await self._exchange(*reused, head, method)
            except _StaleConnection:
                pass
        reader, writer = await self._connect()
        try:
            return await self._exchange(reader, writer, head, method)
        except _StaleConnection:
            raise OriginProtocolError("storage closed the connection without answering") from None

    def put_back(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self._closed or len(self._idle) >= self.size or writer.is_closing():
            writer.close()
            return
        self._idle.append((reader, writer))

    async def close(self) -> None:
        self._closed = True
        while self._idle:
            _, writer = self._idle.pop()
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()

    def _take(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter] | None:
        while self._idle:
            reader, writer = self._idle.pop()
            if not writer.is_closing() and not reader.at_eof():
                return reader, writer
            writer.close()
        return None

    async def _connect(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        try:
            async with asyncio.timeout(self.connect_timeout):
                return await asyncio.open_connection(
                    self.host,
                    self.port,
                    ssl=self._ssl,
                    server_hostname=self.host if self._ssl else None,
                    limit=MAX_HEAD,
                )
        except TimeoutError:
            raise
        except OSError as exc:
            raise OriginProtocolError(f"cannot connect: {type(exc).__name__}") from None

    async def _exchange(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        head: bytes,
        method: str,
    ) -> OriginResponse:
        try:
            writer.write(head)
            raw = await reader.readuntil(b"\r\n\r\n")
        except asyncio.IncompleteReadError as exc:
            writer.close()
            if not exc.partial:
                raise _StaleConnection from None
            raise OriginProtocolError("storage closed the connection mid-answer") from None
        except (ConnectionResetError, BrokenPipeError):
            writer.close()
            raise _StaleConnection from None
        except asyncio.LimitOverrunError:
            writer.close()
            raise OriginProtocolError("storage's response head is too large") from None
        except BaseException:
            writer.close()  # a timeout or cancellation leaves the exchange half done
            raise
        try:
            status, headers, length, reusable = _parse_head(raw, method)
        except OriginProtocolError:
            writer.close()
            raise
        response = OriginResponse(self, reader, writer, status, headers, length, reusable)
        if length == 0:
            response.release()
        return response


class _StaleConnection(Exception):
    pass


def _request_head(method: str, target: str, headers: dict[str, str]) -> bytes:
    lines = [f"{method} {target} HTTP/1.1"]
    lines.extend(f"{name}: {value}" for name, value in headers.items())
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def _parse_head(raw: bytes, method: str) -> tuple[int, CIMultiDictProxy[str], int | None, bool]:
    lines = raw[:-4].decode("latin-1").split("\r\n")
    version, _, rest = lines[0].partition(" ")
    code = rest[:3]
    if version not in ("HTTP/1.1", "HTTP/1.0") or not code.isdigit() or len(code) != 3:
        raise OriginProtocolError("storage's status line is not HTTP/1.x")
    headers: CIMultiDict[str] = CIMultiDict()
    for line in lines[1:]:
        name, colon, value = line.partition(":")
        if not colon or not name or name != name.strip():
            raise OriginProtocolError("storage sent an unreadable header line")
        headers.add(name, value.strip())
    status = int(code)
    reusable = version == "HTTP/1.1" and "close" not in headers.get("Connection", "").lower()
    length: int | None = None
    if method == "HEAD" or status in (204, 304) or 100 <= status < 200:
        length = 0
    elif "Transfer-Encoding" in headers:
        reusable = False
    else:
        values = headers.getall("Content-Length", [])
        if len(set(values)) > 1 or (values and not values[0].isdigit()):
            raise OriginProtocolError("storage sent an unusable Content-Length")
        length = int(values[0]) if values else None
        if length is None:
            reusable = False
    return status, CIMultiDictProxy(headers), length, reusable
