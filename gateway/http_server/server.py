"""The public listener: its connections (`Connection`), the guard over them, and its shutdown.

`Server` is the protocol factory given to `loop.create_server`. It hands every request to one
handler, runs one hook on every answer's headers before they are written (`before_answer`),
and asks `refuse` for the answer to a head it could not read (400, 414, 431) or a handler that
failed unexpectedly (500).
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Awaitable, Callable

from gateway.connections import Guard
from gateway.drain import InFlight
from gateway.http_server.connection import Connection
from gateway.http_server.messages import Answer, Request, Response, StreamResponse

#: A handler answers at once (a `Response`, written before the next request is read: no task)
#: or returns what answers once awaited (run as the request's task).
Handler = Callable[[Request], Response | Awaitable[Response | StreamResponse]]


class Server:
    def __init__(
        self,
        handler: Handler,
        *,
        guard: Guard,
        in_flight: InFlight,
        refuse: Callable[[int], Response],
        before_answer: Callable[[Request, Answer], None] | None = None,
        name: str = "edge-gateway",
    ) -> None:
        self.handler = handler
        self.guard = guard
        self.in_flight = in_flight
        self.name = name  # the `Server` header: no software versions for scanners
        self._refuse = refuse
        self._before_answer = before_answer
        self.loop = asyncio.get_running_loop()
        self.connections: set[Connection] = set()
        self._listeners: list[asyncio.Server] = []
        self._port: int | None = None

    def __call__(self) -> Connection:
        return Connection(self)

    @property
    def draining(self) -> bool:
        """Every answer from now on closes its connection."""
        return self.in_flight.draining

    @property
    def port(self) -> int:
        """The port the first listener was bound to (port 0 gets a free one); kept once it
        stops listening."""
        assert self._port is not None, "listen() first"
        return self._port

    async def listen(
        self,
        host: str,
        port: int,
        *,
        ssl_context: ssl.SSLContext | None = None,
        reuse_port: bool = False,
        backlog: int = 1024,
    ) -> None:
        listener = await self.loop.create_server(
            self, host, port, ssl=ssl_context, reuse_port=reuse_port, backlog=backlog
        )
        self._listeners.append(listener)
        if self._port is None:
            self._port = int(listener.sockets[0].getsockname()[1])

    async def stop_listening(self) -> None:
        """New connections are refused; open ones carry on."""
        listeners, self._listeners = self._listeners, []
        for listener in listeners:
            listener.close()
        for listener in listeners:
            await listener.wait_closed()

    async def close(self) -> None:
        """Stop listening and close every connection (after its buffered bytes)."""
        await self.stop_listening()
        for connection in list(self.connections):
            connection.force_close()

    # --- what connections report -----------------------------------------------------------

    def opened(self, connection: Connection) -> None:
        self.connections.add(connection)
        self.guard.opened(connection)

    def lost(self, connection: Connection) -> None:
        self.connections.discard(connection)
        self.guard.lost(connection)

    def before_answer(self, request: Request, answer: Answer) -> None:
        if self._before_answer is not None:
            self._before_answer(request, answer)

    def refusal(self, status: int) -> Response:
        return self._refuse(status)
