"""A request as the pipeline reads it, and the two kinds of answer it gives.

`Response` is a whole answer (status, headers, a body in memory); `StreamResponse` sends a
body as it comes, its head held back until the first bytes so a small body goes out with its
head in one write. Header names are written as the gateway spells them (one spelling per name,
"Content-Length"); the head is serialised by the connection (`gateway.http_server.connection`),
which adds `Date`, `Server` and `Connection`.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Final

from aiohttp.streams import EMPTY_PAYLOAD, StreamReader
from multidict import CIMultiDictProxy

if TYPE_CHECKING:
    from gateway.http_server.connection import Connection

HTTP_11: Final = (1, 1)
HTTP_10: Final = (1, 0)


class Request:
    """One request head, its body stream and the connection it came on."""

    __slots__ = (
        "connection",
        "content",
        "continued",
        "handled",
        "headers",
        "keep_alive",
        "method",
        "raw_path",
        "task",
        "version",
    )

    def __init__(
        self,
        connection: Connection,
        method: str,
        raw_path: str,
        version: tuple[int, int],
        headers: CIMultiDictProxy[str],
        keep_alive: bool,
        content: StreamReader = EMPTY_PAYLOAD,
    ) -> None:
        self.connection = connection
        self.method = method
        self.raw_path = raw_path  # the target as sent: path and query, never decoded
        self.version = version
        self.headers = headers
        self.keep_alive = keep_alive  # what the client asked for; the answer may still close
        self.content = content  # EMPTY_PAYLOAD when the request has no body
        self.task: asyncio.Task[None] | None = None  # the task handling it, if it has one
        self.handled = False  # its task has begun
        self.continued = False  # its `100 Continue` went out

    @property
    def transport(self) -> asyncio.Transport | None:
        return self.connection.transport

    @property
    def peer(self) -> str | None:
        """The peer's address (the TCP peer: a proxy's, behind one)."""
        return self.connection.peer

    @property
    def secure(self) -> bool:
        """Whether the request came over TLS to this listener."""
        return self.connection.secure

    @property
    def scheme(self) -> str:
        return "https" if self.connection.secure else "http"

    @property
    def host(self) -> str:
        """The `Host` the client sent, else this listener's address."""
        return self.headers.get("Host") or self.connection.local

    @property
    def body_exists(self) -> bool:
        return self.content is not EMPTY_PAYLOAD

    @property
    def content_length(self) -> int | None:
        """The framing's `Content-Length` (the parser has checked its syntax)."""
        value = self.headers.get("Content-Length")
        return None if value is None else int(value)

    def send_continue(self) -> None:
        """`100 Continue`, once: the client may now send its body."""
        if not self.continued:
            self.continued = True
            self.connection.write(b"HTTP/1.1 100 Continue\r\n\r\n")


class Answer:
    """What both kinds of answer have: a status, headers, and whether to close after it."""

    __slots__ = ("close", "headers", "status")

    def __init__(self, status: int, headers: dict[str, str] | None) -> None:
        self.status = status
        self.headers: dict[str, str] = {} if headers is None else headers
        self.close = False  # end the connection after this answer

    def force_close(self) -> None:
        self.close = True


class Response(Answer):
    """A whole answer: status, headers and a body in memory. `Content-Length` is the body's
    unless the headers state one (a HEAD's or a 304's stand for the object's)."""

    __slots__ = ("body",)

    def __init__(
        self,
        status: int = 200,
        headers: dict[str, str] | None = None,
        body: bytes = b"",
        content_type: str | None = None,
    ) -> None:
        super().__init__(status, headers)
        self.body = body
        if content_type is not None:
            self.headers["Content-Type"] = content_type


class StreamResponse(Answer):
    """An answer whose body is written in pieces (`Content-Length` in its headers). Its head
    goes out with the first piece, or alone at `send_headers` (before bytes that bypass the
    transport: splice(2), sendfile(2))."""

    __slots__ = ("_connection", "_request", "finished", "head_sent")

    def __init__(self, status: int = 200, headers: dict[str, str] | None = None) -> None:
        super().__init__(status, headers)
        self._connection: Connection | None = None
        self._request: Request | None = None
        self.head_sent = False
        self.finished = False

    def prepare(self, request: Request) -> None:
        """Bind to `request`'s connection; nothing is written yet."""
        self._request = request
        self._connection = request.connection

    def send_headers(self) -> None:
        if not self.head_sent:
            assert self._connection is not None
            assert self._request is not None
            self.head_sent = True
            self._connection.write(self._connection.head(self._request, self))

    async def write(self, chunk: bytes) -> None:
        connection = self._connection
        assert connection is not None
        assert self._request is not None
        if not self.head_sent:
            self.head_sent = True
            head = connection.head(self._request, self)
            connection.write(head + chunk if self._request.method != "HEAD" else head)
        elif self._request.method != "HEAD":
            connection.write(chunk)
        await connection.drain()

    async def write_eof(self, chunk: bytes = b"") -> None:
        if self.finished:
            return
        if chunk or not self.head_sent:
            await self.write(chunk)
        self.finished = True
