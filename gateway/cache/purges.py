"""Purges: cached objects dropped on an operator's word, on this gateway and across the fleet.

A purge names request paths, as links sign them (decoded, like `gateway revoke --prefix`): one
object, `{"key": "/videos/a.mp4"}`, or everything at or under a prefix on a segment boundary,
`{"prefix": "/videos/ep1/"}` (so not `/videos/ep10/...`; `/` is the whole cache). Each gateway
maps the path to its own cache key (`gateway.storage.keys.object_key` with its origin prefix),
so a purge means the same URLs on every gateway of a fleet.

How one spreads (`POST /admin/purge`, which `gateway purge` calls on the local gateway):

    one process        dropped from its cache at once
    --workers N        the supervisor forwards it to every worker's admin socket
    with redis_url     the receiving process drops at once and appends it to the stream
                       `edge-gateway:cache:purges`; every gateway process with the cache on
                       follows the stream with a blocking XREAD, which returns the moment a
                       purge is added (a supervisor only appends: its workers follow)

A follower that cannot show it saw every purge since it last looked (the process just started,
with a disk tier that survived; Redis restarted; the stream was trimmed past its position)
expires every entry it holds instead: each is revalidated with storage on its next request
(`If-None-Match`, and a 304 moves no bytes), so a version that was purged meanwhile is never
served without storage vouching for it again.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import json
import logging
import random
import re
import secrets
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any, Final
from urllib.parse import unquote

import redis.asyncio as redis
from redis.exceptions import RedisError, ResponseError

from gateway.cache import Cache
from gateway.observability.metrics import Metrics
from gateway.observability.redaction import redact_url
from gateway.revocation.redis_store import cancelled_meanwhile, client_for
from gateway.storage.keys import InvalidKey, object_key

log = logging.getLogger("gateway.cache")

STREAM: Final = "edge-gateway:cache:purges"
STREAM_MAXLEN: Final = 10_000  # a follower further behind than this expires everything
BLOCK_MS: Final = 1000
MAX_BACKOFF: Final = 5.0

_SURROGATE: Final = re.compile(r"[\ud800-\udfff]")
_PERCENT_ESCAPE: Final = re.compile(r"%[0-9A-Fa-f]{2}")


class PurgeError(ValueError):
    """A purge request is invalid; the message says why and is safe to show the caller."""


class PurgeFailed(Exception):
    """A purge did not reach everything it should have; the message says what (no secrets)."""


class Target(enum.StrEnum):
    KEY = "key"
    PREFIX = "prefix"


@dataclass(frozen=True, slots=True)
class Purge:
    target: Target
    path: str  # a decoded request path; a prefix without its trailing '/' (or '/' alone)

    def describe(self) -> dict[str, str]:
        return {self.target.value: self.path}

    def to_json(self) -> str:
        return json.dumps(self.describe(), separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str | bytes) -> Purge:
        try:
            body = json.loads(text)
        except ValueError:
            raise PurgeError("not JSON") from None
        return from_body(body)


@dataclass(frozen=True, slots=True)
class PurgeResult:
    dropped: int | None  # cached objects this gateway dropped; None: it holds no cache itself
    published: bool  # appended to the fleet's stream


def checked(target: Target, path: object) -> Purge:
    """A purge from untrusted input (API, CLI, the stream), every rule checked."""
    name = target.value
    if not isinstance(path, str):
        raise PurgeError(f"{name}: must be a string")
    if _SURROGATE.search(path):
        raise PurgeError(f"{name}: not valid Unicode")
    if _PERCENT_ESCAPE.search(path):
        raise PurgeError(
            f"{name}: give the decoded path ({unquote(path)!r}), not the percent-encoded form "
            "the access log shows"
        )
    if target is Target.PREFIX:
        if path == "/":
            return Purge(target, path)
        path = path.removesuffix("/")
    try:
        object_key(path)
    except InvalidKey as exc:
        raise PurgeError(f"{name}: {exc} (a request path, such as /videos/a.mp4)") from None
    return Purge(target, path)


def from_body(body: object) -> Purge:
    """The purge a request body asks for: exactly one of `key` and `prefix`."""
    if not isinstance(body, dict) or len(body) != 1 or not set(body) <= set(Target):
        raise PurgeError('a JSON object with exactly one of "key" or "prefix" (request paths)')
    [(name, value)] = body.items()
    return checked(Target(name), value)


def drop(cache: Cache, purge: Purge, origin_prefix: str) -> int:
    """Drop what `purge` names from `cache`; the number of cached objects dropped."""
    if purge.path == "/":
        return cache.purge_prefix(origin_prefix)
    try:
        key = object_key(purge.path, origin_prefix)
    except InvalidKey:  # too long with this gateway's prefix: nothing is cached under it
        return 0
    dropped = int(cache.purge(key))
    if purge.target is Target.PREFIX:
        dropped += cache.purge_prefix(key + "/")
    return dropped


def expire_all(cache: Cache, now: float) -> int:
    """Make every entry stale (revalidated with storage before it is served again)."""
    entries = list(cache.tiers.objects.values())
    for cached in entries:
        cached.fresh_until = min(cached.fresh_until, now)
    return len(entries)


class Purges:
    """Where a purge goes: this process's cache at once, then the fleet's stream, if any."""

    def __init__(self, cache: Cache | None, origin_prefix: str, fleet: FleetPurges | None) -> None:
        self.cache = cache
        self.origin_prefix = origin_prefix
        self.fleet = fleet
        self.dropped = 0  # cached objects dropped by purges (a metric)
        self.gaps = 0  # reconnections to the stream without proof nothing was missed (a metric)

    def apply(self, purge: Purge) -> int | None:
        if self.cache is None:
            return None
        dropped = drop(self.cache, purge, self.origin_prefix)
        self.dropped += dropped
        return dropped

    async def purge(self, purge: Purge) -> PurgeResult:
        dropped = self.apply(purge)
        if self.fleet is None:
            return PurgeResult(dropped, published=False)
        try:
            await self.fleet.publish(purge)
        except (RedisError, OSError) as exc:
            log.error("cache purge not published to the fleet: %s", type(exc).__name__)
            raise PurgeFailed(
                "dropped here, but not published to the fleet: Redis is unreachable; retry"
            ) from None
        return PurgeResult(dropped, published=True)

    def expire(self, why: str) -> None:
        if self.cache is None:
            return
        expired = expire_all(self.cache, time.time())
        if expired:
            log.warning("cache: %s; %d cached objects will be revalidated first", why, expired)

    async def close(self) -> None:
        if self.fleet is not None:
            await self.fleet.close()


@dataclass
class _Position:
    """Where a follower is in the stream, and how it can tell that it missed nothing."""

    run_id: str  # the Redis server's run (a restart changes it)
    last: bytes  # the id of the last event seen
    seen: int | None  # events added to the stream up to `last` (None: Redis < 7 cannot tell)

    def advance(self, event_id: bytes) -> None:
        self.last = event_id
        if self.seen is not None:
            self.seen += 1


class FleetPurges:
    """The fleet's purge stream in Redis (the revocation store's `redis_url`)."""

    def __init__(self, url: str, *, stream: str = STREAM) -> None:
        self.url = url
        self.stream = stream
        self.source = secrets.token_hex(8).encode()  # this process: its own events are skipped
        self.connected = False
        self._client: redis.Redis = client_for(  # the revocations' store, Sentinel or not
            url,
            socket_connect_timeout=2,
            socket_timeout=BLOCK_MS / 1000 + 5,
            health_check_interval=0,
            decode_responses=False,
        )[0]

    async def publish(self, purge: Purge) -> None:
        await self._client.xadd(
            self.stream,
            {"purge": purge.to_json(), "from": self.source},
            maxlen=STREAM_MAXLEN,
            approximate=True,
        )

    async def follow(self, purges: Purges) -> None:
        """Apply every purge the fleet publishes until cancelled; reconnect with backoff."""
        position: _Position | None = None
        backoff = 0.1
        while True:
            try:
                position = await self._resume(position, purges)
                backoff = 0.1
                while True:
                    reply: Any = await self._client.xread(
                        {self.stream: position.last}, block=BLOCK_MS, count=1000
                    )
                    if cancelled_meanwhile():
                        raise asyncio.CancelledError
                    for _stream, events in reply or ():
                        for event_id, fields in events:
                            position.advance(event_id)
                            if fields.get(b"from") == self.source:
                                continue  # applied when it was made
                            try:
                                purges.apply(Purge.from_json(fields[b"purge"]))
                            except (PurgeError, KeyError) as exc:
                                log.error("cache purge event %r ignored: %s", event_id, exc)
            except (RedisError, OSError) as exc:
                if cancelled_meanwhile():
                    raise asyncio.CancelledError from exc
                if self.connected:
                    log.warning("cache purge stream %s lost: %s", redact_url(self.url), exc)
                self.connected = False
                await asyncio.sleep(backoff * random.uniform(0.5, 1.0))  # noqa: S311 - jitter
                backoff = min(MAX_BACKOFF, backoff * 2)

    async def _resume(self, position: _Position | None, purges: Purges) -> _Position:
        """The position to read on from: `position` if nothing was missed since, else now
        (after expiring everything, since what was missed is unknown)."""
        async with self._client.pipeline(transaction=True) as pipe:
            pipe.info("server")
            pipe.xinfo_stream(self.stream)
            server, stream = await pipe.execute(raise_on_error=False)
        if isinstance(server, Exception):
            raise server
        if isinstance(stream, ResponseError):
            stream = None  # no stream yet: nothing was ever published (or it was deleted)
        elif isinstance(stream, Exception):
            raise stream
        now = _Position(
            str(server["run_id"]),
            stream["last-generated-id"] if stream else b"0-0",
            stream.get("entries-added") if stream else 0,
        )
        self.connected = True
        if position is None:
            purges.expire("following the fleet's purges from now on; earlier ones are unknown")
            return now
        gap = _gap(position, now, stream)
        if gap is None:
            return position
        purges.gaps += 1
        purges.expire(gap)
        return now

    async def close(self) -> None:
        with contextlib.suppress(RedisError, OSError):
            await self._client.aclose()


def _gap(position: _Position, now: _Position, stream: dict[str, Any] | None) -> str | None:
    """Why events after `position` may have been missed, or None when none can have been."""
    if position.run_id != now.run_id:
        return "Redis restarted: purges made while this gateway was away may be lost"
    if position.seen is None or now.seen is None:
        return "this Redis cannot tell whether purges were missed (it needs Redis 7)"
    added_since = now.seen - position.seen
    if added_since == 0:
        return None
    if stream is None or added_since < 0:
        return "the purge stream was deleted or replaced"
    first = stream.get("first-entry")
    if first is not None and _id(first[0]) <= _id(position.last):
        return None  # trimming has not reached past this position
    if added_since > int(stream["length"]):
        return "the purge stream was trimmed past this gateway's position"
    return None


def _id(event_id: bytes) -> tuple[int, int]:
    milliseconds, _, sequence = event_id.partition(b"-")
    return int(milliseconds), int(sequence or 0)


@contextlib.asynccontextmanager
async def open_purges(
    cache: Cache | None, origin_prefix: str, redis_url: str | None, metrics: Metrics
) -> AsyncIterator[Purges]:
    """The purges of one gateway process, following the fleet's stream while the cache is on
    and Redis configured."""
    fleet = FleetPurges(redis_url) if redis_url else None
    purges = Purges(cache, origin_prefix, fleet)
    metrics.count_callback(
        "gateway_cache_purged",
        "Cached objects dropped by purges (admin API, gateway purge, the fleet, uploads).",
        lambda: float(purges.dropped),
    )
    metrics.count_callback(
        "gateway_cache_purge_gaps",
        "Reconnections to the fleet's purge stream that could not show no purge was missed "
        "(Redis restarted, stream trimmed): every entry was expired, to be revalidated.",
        lambda: float(purges.gaps),
    )
    task: asyncio.Task[None] | None = None
    if fleet is not None and cache is not None:
        # What the disk tier kept across the restart may have been purged meanwhile.
        purges.expire("started: purges made while this gateway was down are unknown")
        task = asyncio.create_task(fleet.follow(purges), name="cache-purges")
    try:
        yield purges
    finally:
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await purges.close()
