"""The revocation list: entries, the in-memory view the request path checks, and its stores.

`backends.open_store` picks the store from its URL: Redis when `redis_url` is set (a fleet),
else the embedded SQLite file (one node).
"""

from __future__ import annotations

from typing import Protocol

from gateway.revocation.entries import (
    REQUEST_KINDS,
    Kind,
    Revocation,
    RevocationError,
    from_request,
)
from gateway.revocation.view import RevocationView

__all__ = [
    "REQUEST_KINDS",
    "Kind",
    "Revocation",
    "RevocationError",
    "RevocationStore",
    "RevocationView",
    "from_request",
]


class RevocationStore(Protocol):
    name: str
    connected: bool
    resyncs: int  # full resyncs of a follower's view (start and every reconnect)

    async def open(self) -> None: ...
    async def add(self, entry: Revocation) -> None: ...
    async def entries(self, now: float | None = None) -> list[Revocation]: ...
    async def prune(self, now: float | None = None) -> int: ...
    async def follow(self, view: RevocationView) -> None: ...
    async def close(self) -> None: ...

    async def claim_once(self, token_id: str, until: float) -> bool:
        """Atomically claim a one-time link for one use, fleet-wide: True for exactly one
        caller until `release` or `until` (unix seconds, the link's expiry plus skew)."""
        ...

    async def release(self, token_id: str) -> None:
        """Give a claim back (the use failed), so the link can be tried again."""
        ...
