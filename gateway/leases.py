"""What an upload holds in the fleet's store while it runs, as leases that die with the gateway.

An upload may claim its one-time link and its no-overwrite key, and a multipart upload is listed
with a lease of its own (`ObjectStore.begin_upload(registry=...)`). Each is taken until now +
`upload_lease` and renewed every third of that while the upload runs, so:

* a gateway killed mid-upload (`kill -9`, a lost node) stops renewing: its claims lapse within
  one lease, and another gateway can take them (a retry of the link, another no-overwrite
  upload of the key);
* its multipart upload's lease lapses too, and the next sweep of any gateway
  (`sweep_abandoned`, every `upload_sweep_interval`) aborts it;
* a live gateway that cannot renew (the store unreachable) stops the upload itself, 503
  `revocation_store_unavailable`, before its claims can lapse under it: what it holds is never
  held twice.

A one-time link that was used keeps its claim until the link expires (`hold`), as before.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator
from typing import Final

from gateway.errors import Refusal, Refused
from gateway.observability.metrics import Metrics
from gateway.revocation import UPLOAD_LEASE, RevocationStore
from gateway.storage import ObjectStore, StorageError

log = logging.getLogger("gateway.uploads")

RENEWALS_PER_LEASE: Final = 3
#: An upload whose leases went unrenewed for this share of a lease is stopped: with renewals
#: every third, that leaves two failed attempts, and a sixth of a lease before they lapse.
CUT_AT: Final = 5 / 6


class Leases:
    """The leases of one upload. `renewed()` keeps them while the upload runs; `release()`
    gives back all of them on the way out (except a used one-time link's, `hold`)."""

    def __init__(self, store: RevocationStore, lease: float) -> None:
        self.store = store
        self.lease = lease
        self.names: list[str] = []  # what this upload holds and renews

    def _until(self) -> float:
        return time.time() + self.lease

    async def claim(self, name: str, taken: Refusal) -> None:
        """Claim `name`, or refuse: `taken` when another holds it."""
        try:
            claimed = await self.store.claim_once(name, self._until())
        except Exception as exc:  # any store failure: fail closed, never upload twice
            log.error("could not claim an upload in the revocation store: %s", type(exc).__name__)
            raise Refused(Refusal.REVOCATION_STORE_UNAVAILABLE) from None
        if not claimed:
            raise Refused(taken)
        self.names.append(name)

    # UploadRegistry: a multipart upload is listed with a lease of its own.

    async def started(self, location: str, upload_id: str) -> None:
        try:
            await self.store.record_upload(upload_id, location, self._until())
        except Exception as exc:  # unlisted, a crash would leave its parts: do not start it
            log.error("could not list a multipart upload: %s", type(exc).__name__)
            raise Refused(Refusal.REVOCATION_STORE_UNAVAILABLE) from None
        self.names.append(UPLOAD_LEASE + upload_id)

    async def ended(self, upload_id: str) -> None:
        with contextlib.suppress(ValueError):
            self.names.remove(UPLOAD_LEASE + upload_id)
        await self.store.forget_upload(upload_id)

    @contextlib.asynccontextmanager
    async def renewed(self) -> AsyncIterator[None]:
        """Renew the leases while the block runs; stop it with 503 if they could not be
        renewed for CUT_AT of a lease (or another gateway holds one now)."""
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout_at(loop.time() + self.lease * CUT_AT) as deadline:
                renewer = asyncio.create_task(self._renew(deadline), name="lease renewal")
                try:
                    yield
                finally:
                    renewer.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await renewer
        except TimeoutError:
            if not deadline.expired():
                raise
            log.error("an upload's leases could not be renewed in time: upload stopped")
            raise Refused(Refusal.REVOCATION_STORE_UNAVAILABLE) from None

    async def _renew(self, deadline: asyncio.Timeout) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(self.lease / RENEWALS_PER_LEASE)
            started, until = loop.time(), self._until()
            try:
                held = [await self.store.renew(name, until) for name in list(self.names)]
            except Exception as exc:
                log.warning("could not renew an upload's leases: %s", type(exc).__name__)
                continue
            if deadline.expired():
                return
            if not all(held):  # lapsed and taken: stop at once
                deadline.reschedule(loop.time())
                return
            deadline.reschedule(started + self.lease * CUT_AT)

    async def hold(self, name: str, until: float) -> None:
        """Keep `name` claimed until `until` (a used one-time link: until it expires)."""
        with contextlib.suppress(ValueError):
            self.names.remove(name)
        try:
            await self.store.renew(name, until)
        except Exception as exc:
            log.error("could not keep a used one-time link claimed: %s", type(exc).__name__)

    async def release(self) -> None:
        """Give back every lease still held; a multipart upload's then counts as abandoned at
        once (its abort failed: the next sweep retries)."""
        for name in self.names:
            try:
                await self.store.release(name)
            except Exception as exc:
                log.error(
                    "could not give back an upload claim (%s): it lapses within %gs",
                    type(exc).__name__,
                    self.lease,
                )
        self.names.clear()


async def sweep_abandoned(
    claims: RevocationStore, store: ObjectStore, metrics: Metrics, every: float
) -> None:
    """Every `every` seconds, abort the multipart uploads whose gateway stopped renewing them."""
    while True:
        await asyncio.sleep(every)
        try:
            await sweep_once(claims, store, metrics)
        except Exception as exc:
            log.warning("sweep of abandoned uploads failed: %s", type(exc).__name__)


async def sweep_once(claims: RevocationStore, store: ObjectStore, metrics: Metrics) -> int:
    """Abort every abandoned multipart upload of this store's bucket; how many."""
    aborted = 0
    for upload_id, location in await claims.abandoned_uploads():
        try:
            if not await store.abort_abandoned(location, upload_id):
                continue  # another bucket's: its own gateways sweep it
        except StorageError as exc:
            log.warning("could not abort an abandoned multipart upload: %s", exc)
            continue
        await claims.forget_upload(upload_id)
        aborted += 1
    if aborted:
        metrics.abandoned_uploads.inc(aborted)
        log.info("aborted %d multipart uploads abandoned by a gateway that stopped", aborted)
    return aborted
