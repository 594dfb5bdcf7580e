"""Waiting for a state in tests: poll it against a deadline, never sleep for a guess."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

FIRST_PAUSE = 0.001
LONGEST_PAUSE = 0.01


async def eventually(condition: Callable[[], bool], within: float = 10.0) -> None:
    """Return once `condition()` holds; AssertionError if it still does not after `within`
    seconds. Pauses start at 1 ms (most states arrive at once) and grow to 10 ms, so a long
    wait costs the event loop little."""
    deadline = time.monotonic() + within
    pause = FIRST_PAUSE
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached before the deadline")
        await asyncio.sleep(pause)
        pause = min(pause * 2, LONGEST_PAUSE)


async def eventually_async(probe: Callable[[], Awaitable[bool]], within: float = 10.0) -> None:
    """`eventually` for a state that takes a call to read (storage, a store, a request)."""
    deadline = time.monotonic() + within
    pause = FIRST_PAUSE
    while not await probe():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached before the deadline")
        await asyncio.sleep(pause)
        pause = min(pause * 2, LONGEST_PAUSE)
