"""The revocation list: entries, the in-memory view the request path checks, and its stores.

`backends.open_store` picks the store from its URL: Redis when `redis_url` is set (a fleet),
else the embedded SQLite file (one node).
"""

from __future__ import annotations

from typing import Final, Protocol

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
    "UPLOAD_LEASE",
    "Kind",
    "Revocation",
    "RevocationError",
    "RevocationStore",
    "RevocationView",
    "from_request",
]


#: A multipart upload's lease is the claim of this and its upload id (`record_upload`).
UPLOAD_LEASE: Final = "upload:"


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

    # Claims and leases, for uploads (`gateway.leases`). A claim is held by the store object
    # that took it (one process); a lease is a claim whose `until` its holder keeps renewing,
    # so that it lapses soon after the holder dies.

    async def claim_once(self, token_id: str, until: float) -> bool:
        """Atomically claim a name (a one-time link, a no-overwrite key) fleet-wide: True for
        exactly one caller until `release` or `until` (unix seconds), whichever comes first."""
        ...

    async def renew(self, token_id: str, until: float) -> bool:
        """Extend this holder's claim to `until` (never shortening it); False if it is not
        held by this holder any more (it lapsed and was taken, or is gone)."""
        ...

    async def release(self, token_id: str) -> None:
        """Give this holder's claim back (the use failed), so the name can be claimed again."""
        ...

    async def record_upload(self, upload_id: str, location: str, until: float) -> None:
        """List a multipart upload this holder started, with a lease on it until `until`
        (renewed as the claim `upload:<upload_id>`)."""
        ...

    async def abandoned_uploads(self) -> list[tuple[str, str]]:
        """(upload id, location) of every listed upload whose lease lapsed: its holder died."""
        ...

    async def forget_upload(self, upload_id: str) -> None:
        """Drop an upload from the list (completed, or aborted), and its lease."""
        ...
