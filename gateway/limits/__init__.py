"""Usage limits a link carries (MaxStreams, MaxUses, MaxServed, Rate), counted fleet-wide.

    handler, after revocation: `Limits.admission(claims, token_id, client)`: None for a link
        without limits (it pays nothing more)
    before storage is asked (a plain GET of a link without MaxServed, `early`), else before
        the response head: `Admission.admit(length, from_start)`: ONE atomic store call
        takes the client's stream lease, counts the use and reserves the body's bytes, or
        refuses (429 too_many_streams, 403 uses_exhausted, 403 bytes_exhausted)
    while the body streams: the lease renewed every third of it; `pace` per chunk (Rate)
    after: `finish(sent)` gives back reserved bytes that were not sent, and the use when no
        body was (storage failed or refused after an early admission)

What counts (docs/gateway.md, Usage limits): a stream is a lease per client address that
outlives its last response by up to `limit_stream_lease` seconds, so an HLS player's segment
requests are one stream; a use is a response with a body that starts at byte 0 (a seek's
206s do not count again); served bytes are body bytes. A link with SubjectStreams holds its
leases under its subject's key (`subject_key`), shared by all such links of the Sub; its uses
and bytes stay its own. The store is the revocation store's URL: Redis for a fleet
(`redis_store`), else the SQLite file (`sqlite_store`).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
from dataclasses import dataclass
from typing import Final, Protocol

from gateway.errors import Refusal, Refused
from signer.format import Claims

log = logging.getLogger("gateway.limits")

OK: Final = "ok"
#: What a store's verdict names -> the refusal it is answered with.
REFUSALS: Final = {
    "too_many_streams": Refusal.TOO_MANY_STREAMS,
    "uses_exhausted": Refusal.USES_EXHAUSTED,
    "bytes_exhausted": Refusal.BYTES_EXHAUSTED,
}


class LimitStoreError(Exception):
    """The store could not be asked (Redis down, the file unwritable)."""


@dataclass(frozen=True)
class Ask:
    """One request's claim on a link's limits; a limit of 0 is not carried by the link."""

    client: str
    max_streams: int
    lease: float  # seconds the stream lease runs from now
    max_uses: int  # counted only when `use` is set
    use: bool
    max_served: int
    reserve: int  # bytes to reserve under max_served
    expires: float  # unix seconds: the link's Expires (+ skew); its counters go with it
    streams_of: str = ""  # whose leases MaxStreams counts: "" the link's, else `subject_key`


@dataclass(frozen=True)
class Usage:
    """What a link has used, for operators."""

    uses: int
    served: int
    streams: dict[str, float]  # client -> lease end (unix seconds)


class LimitStore(Protocol):
    name: str

    async def open(self) -> None: ...
    async def close(self) -> None: ...
    async def admit(self, link: str, ask: Ask) -> str:
        """Atomically: judge every limit, and only if all pass take the lease, count the use
        and reserve the bytes. Returns OK or the refusal's code."""
        ...

    async def renew(self, link: str, client: str, lease: float, expires: float) -> None:
        """Extend (never shorten) a client's stream lease to now + `lease`."""
        ...

    async def refund(self, link: str, unsent: int, uses: int = 0) -> None:
        """Give back reserved bytes that were not sent, and uses that served no body."""
        ...

    async def pace(self, link: str, rate: int, count: int, expires: float) -> float:
        """Book `count` bytes on the link's shared schedule; seconds to wait before sending."""
        ...

    async def usage(self, link: str) -> Usage:
        """A link's counts and live leases; for a `subject_key`, the subject's leases."""
        ...

    async def reset(self, link: str) -> None:
        """Forget a link's (or a subject's) counts, leases and Rate schedule."""
        ...


def subject_key(sub: str) -> str:
    """Where a subject's leases are kept (SubjectStreams): a digest, so any Sub makes a plain
    key that can never be a token id (32 hex digits)."""
    return "sub-" + hashlib.sha256(sub.encode()).hexdigest()[:32]


class Limits:
    """The pipeline's side of limits: builds an `Admission` for each limited request."""

    def __init__(self, store: LimitStore, *, lease: float, skew: float, fail_open: bool) -> None:
        self.store, self.lease, self.skew, self.fail_open = store, lease, skew, fail_open

    def admission(self, claims: Claims, token_id: str, client: str | None) -> Admission | None:
        if not claims.has_limits:
            return None
        return Admission(self, claims, token_id, client or "unknown")


class Admission:
    """One limited request: admitted once before its head, settled once after its body."""

    def __init__(self, limits: Limits, claims: Claims, token_id: str, client: str) -> None:
        self.limits, self.claims, self.link, self.client = limits, claims, token_id, client
        self.expires = claims.expires + limits.skew
        self.streams_of = (
            subject_key(claims.sub) if claims.subject_streams and claims.sub is not None else ""
        )
        self.reserved = 0
        self.counted_use = False
        self._renewer: asyncio.Task[None] | None = None
        self.admitted = self.settled = False

    @property
    def paced(self) -> bool:
        return self.claims.rate is not None

    @property
    def early(self) -> bool:
        """Whether it can be judged before storage is asked: only MaxServed needs the body's
        length, which storage gives."""
        return self.claims.max_served is None

    async def admit(self, length: int, *, from_start: bool) -> None:
        """Before storage or the head: raise Refused unless every limit lets this response
        through. Once admitted, a request is not judged again."""
        if self.admitted:
            return
        claims, limits = self.claims, self.limits
        reserve = length if claims.max_served is not None else 0
        ask = Ask(
            client=self.client,
            max_streams=claims.max_streams or 0,
            lease=limits.lease,
            max_uses=claims.max_uses or 0,
            use=from_start,
            max_served=claims.max_served or 0,
            reserve=reserve,
            expires=self.expires,
            streams_of=self.streams_of,
        )
        if ask.max_streams == 0 and ask.max_uses == 0 and ask.max_served == 0:
            self.admitted = True  # Rate alone: nothing to judge
            return
        try:
            verdict = await limits.store.admit(self.link, ask)
        except LimitStoreError as exc:
            if not limits.fail_open:
                log.warning("limit store unavailable, refusing a limited link: %s", exc)
                raise Refused(Refusal.LIMITS_UNAVAILABLE) from None
            log.warning("limit store unavailable, serving a limited link uncounted: %s", exc)
            self.admitted = True
            return
        if verdict != OK:
            raise Refused(REFUSALS[verdict])
        self.admitted, self.reserved = True, reserve
        self.counted_use = ask.use and ask.max_uses > 0
        if ask.max_streams:
            self._renewer = asyncio.create_task(self._renew(), name="stream lease")

    async def _renew(self) -> None:
        lease = self.limits.lease
        while True:
            await asyncio.sleep(lease / 3)
            with contextlib.suppress(LimitStoreError):
                await self.limits.store.renew(
                    self.streams_of or self.link, self.client, lease, self.expires
                )

    async def pace(self, count: int) -> None:
        """Wait for this chunk's slot on the link's schedule (Rate): a sleep, never a spin."""
        rate = self.claims.rate
        if rate is None or count <= 0:
            return
        try:
            delay = await self.limits.store.pace(self.link, rate, count, self.expires)
        except LimitStoreError:
            delay = count / rate  # pace this connection alone rather than not at all
        if delay > 0:
            await asyncio.sleep(delay)

    async def finish(self, sent: int, *, streamed: bool = True) -> None:
        """After the body: stop renewing (the lease runs out by itself), give back bytes
        reserved but not sent, and the use if no body was `streamed`. Once."""
        if self.settled:
            return
        self.settled = True
        if self._renewer is not None:
            self._renewer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._renewer
        unsent = self.reserved - sent
        uses = 1 if self.counted_use and not streamed else 0
        if unsent > 0 or uses:
            with contextlib.suppress(LimitStoreError):
                await self.limits.store.refund(self.link, max(0, unsent), uses)
