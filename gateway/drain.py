"""The requests one process has in flight, so that a shutdown can wait for them and then cut.

`gateway.server.drain` uses this instead of aiohttp's own shutdown, which marks every
connection closed before it waits (from then on the protocol drops incoming bytes, so an
upload's body stops arriving) and waits its timeout twice (once for the handler, once more
after cancelling it). Handlers read `cutting` to record a request that the deadline ended as
`shutdown` rather than as a client that went away.
"""

from __future__ import annotations

import asyncio
from typing import Any


class InFlight:
    def __init__(self) -> None:
        self.draining = False  # SIGTERM came: answers close their connection, /readyz fails
        self.cutting = False  # the grace is over: what still runs is being cancelled
        self._tasks: set[asyncio.Task[Any]] = set()
        self._idle = asyncio.Event()
        self._idle.set()

    def __len__(self) -> int:
        return len(self._tasks)

    def track(self, task: asyncio.Task[Any] | None = None) -> None:
        """Count `task` (the task of one request, `request.task`; by default the current
        one) until it is done: that includes writing the response after the handler returned
        it."""
        if task is None:
            task = asyncio.current_task()
        if task is None or task in self._tasks:
            return
        self._tasks.add(task)
        self._idle.clear()
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not self._tasks:
            self._idle.set()

    async def settle(self, within: float) -> bool:
        """Wait until nothing is in flight, at most `within` seconds; whether nothing is."""
        try:
            async with asyncio.timeout(within):
                await self._idle.wait()
        except TimeoutError:
            return False
        return True

    async def cut(self, within: float) -> int:
        """Cancel every request still in flight and give their clean-up (uploads aborted,
        claims given back) `within` seconds. Returns how many were cut."""
        self.cutting = True
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=within)
        return len(tasks)
