"""A TCP forwarder that counts: put it between the gateway and storage to see how many
connections the gateway opens and how many bytes storage sends back."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator


class CountingForwarder:
    """Forwards every connection accepted on a loopback port to `target_port`, counting the
    connections (`accepted`) and the bytes forwarded back from the target (`from_target`).

    A byte is counted before it is passed on, so once the gateway has read an answer, that
    answer's bytes are in the count: no waiting is needed before reading it."""

    def __init__(self, target_port: int, host: str = "127.0.0.1") -> None:
        self.host = host
        self.target_port = target_port
        self.accepted = 0
        self.from_target = 0
        self._server: asyncio.Server | None = None
        self._pipes: set[asyncio.Task[None]] = set()

    @property
    def port(self) -> int:
        assert self._server is not None, "start() was not awaited"
        port: int = self._server.sockets[0].getsockname()[1]
        return port

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._accept, self.host, 0)

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for task in list(self._pipes):
            task.cancel()
        await asyncio.gather(*self._pipes, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.accepted += 1
        try:
            up_reader, up_writer = await asyncio.open_connection(self.host, self.target_port)
        except OSError:
            writer.close()
            return
        both = (writer, up_writer)
        for pipe in (
            self._pipe(reader, up_writer, both),
            self._pipe(up_reader, writer, both, True),
        ):
            task = asyncio.create_task(pipe)
            self._pipes.add(task)
            task.add_done_callback(self._pipes.discard)

    async def _pipe(
        self,
        source: asyncio.StreamReader,
        sink: asyncio.StreamWriter,
        both: tuple[asyncio.StreamWriter, asyncio.StreamWriter],
        counted: bool = False,
    ) -> None:
        try:
            while data := await source.read(65536):
                if counted:
                    self.from_target += len(data)
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
