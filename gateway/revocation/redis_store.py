"""The fleet's revocation store: Redis (or Valkey), pushed to every gateway.

Layout: a hash `<ns>:entries` holds every live entry (field `kind:value`, value JSON), and a
stream `<ns>:events` carries each new entry to the gateways. A writer updates both in one
MULTI/EXEC. A gateway follows the stream with a blocking XREAD, which returns the moment an
entry is added; every return, empty or not, confirms the view is current (that is the sync
lag). On start and on every reconnect it resyncs in full: it notes the stream's last id, then
reads the whole hash, then follows the stream from that id, so nothing added while it was away
is missed. A resync only adds (entries never get withdrawn, they expire), so a Redis that lost
its data does not lift a revocation: the gateway keeps enforcing it and writes it back.

Uploads claim names (a one-time link, a no-overwrite key) with `SET <ns>:claim:<name> <holder>
NX PX`, which exactly one gateway of the fleet wins; the holder (this store object: one
process) renews the expiry while its upload runs (a script that checks the holder), so a dead
process's claim lapses on Redis's own clock. The multipart uploads a gateway starts are listed
in the hash `<ns>:uploads` (upload id -> location), each with such a lease
(`<ns>:claim:upload:<upload id>`); one whose lease key is gone was abandoned.

With Sentinel (`redis+sentinel://host:26379,host2:26379/service/db`) the client asks the
sentinels for the primary on every (re)connect, so a failover is a reconnect and a resync like
any other. Replication is asynchronous: a promoted replica may lack the last entries the old
primary acknowledged; the resync's write-back restores them (also on the stream, so that a
gateway that had not seen them gets them too).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import secrets
import time
from dataclasses import dataclass
from typing import Any, Final
from urllib.parse import parse_qs, unquote, urlsplit

import redis.asyncio as redis
from redis.asyncio.sentinel import Sentinel
from redis.exceptions import RedisError, WatchError

from gateway.observability.redaction import redact_url
from gateway.revocation import UPLOAD_LEASE
from gateway.revocation.entries import Revocation, RevocationError
from gateway.revocation.view import RevocationView

log = logging.getLogger("gateway.revocation")

NAMESPACE = "edge-gateway:revocations"
BLOCK_MS = 1000
STREAM_MAXLEN = 100_000  # a follower that is behind by more resyncs from the hash anyway
MAX_BACKOFF = 5.0
PRUNE_EVERY = 60.0
ADD_ATTEMPTS = 50
SENTINEL_SCHEME: Final = "redis+sentinel"
SENTINEL_PORT: Final = 26379
#: Query parameters of a Sentinel URL: the data nodes' credentials (as in the userinfo) and the
#: sentinels' own, which are separate in Redis (`requirepass` vs `sentinel auth-pass`).
SENTINEL_PARAMETERS: Final = ("username", "password", "sentinel_username", "sentinel_password")

# KEYS[1] the claim, ARGV[1] the holder, ARGV[2] the new lease in ms: extend, never shorten.
_RENEW = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
if redis.call('PTTL', KEYS[1]) < tonumber(ARGV[2]) then
    redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 1
"""
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('DEL', KEYS[1]) end
return 0
"""


class RedisStore:
    name = "redis"

    def __init__(self, url: str, *, namespace: str = NAMESPACE) -> None:
        self.url = url
        self.entries_key = f"{namespace}:entries"
        self.events_key = f"{namespace}:events"
        self.prune_lock_key = f"{namespace}:prune-lock"
        self.claims_prefix = f"{namespace}:claim:"
        self.uploads_key = f"{namespace}:uploads"
        self.holder = secrets.token_hex(8).encode()  # whose claims these are
        self.connected = False
        self.resyncs = 0
        self._client: redis.Redis
        self._client, self._sentinel = client_for(
            url,
            socket_connect_timeout=2,
            socket_timeout=BLOCK_MS / 1000 + 5,
            health_check_interval=0,
            decode_responses=False,
        )

    async def open(self) -> None:
        """Nothing to create; a Redis that is down at start-up is retried by `follow`."""

    async def add(self, entry: Revocation) -> None:
        """Merge with any entry for the same thing and publish, as one optimistic transaction
        (WATCH): two operators revoking the same subject at once both widen it."""
        async with self._client.pipeline(transaction=True) as pipe:
            for _ in range(ADD_ATTEMPTS):
                try:
                    await pipe.watch(self.entries_key)
                    merged = entry
                    old = await pipe.hget(self.entries_key, entry.field)
                    if old is not None:
                        with contextlib.suppress(RevocationError):
                            merged = entry.merged(Revocation.from_json(old))
                    payload = merged.to_json()
                    pipe.multi()  # type: ignore[no-untyped-call]
                    pipe.hset(self.entries_key, entry.field, payload)
                    pipe.xadd(
                        self.events_key,
                        {"entry": payload},
                        maxlen=STREAM_MAXLEN,
                        approximate=True,
                    )
                    await pipe.execute()
                    return
                except WatchError:
                    continue
        raise RevocationError("revocation store too busy: the entry changed under every attempt")

    async def claim_once(self, token_id: str, until: float) -> bool:
        """`SET NX` is the atomic test; the key expires by itself unless renewed."""
        claimed = await self._client.set(
            self.claims_prefix + token_id, self.holder, nx=True, px=_ttl_ms(until)
        )
        return bool(claimed)

    async def renew(self, token_id: str, until: float) -> bool:
        renewed = await self._client.eval(
            _RENEW, 1, self.claims_prefix + token_id, self.holder, _ttl_ms(until)
        )
        return bool(renewed)

    async def release(self, token_id: str) -> None:
        await self._client.eval(_RELEASE, 1, self.claims_prefix + token_id, self.holder)

    async def record_upload(self, upload_id: str, location: str, until: float) -> None:
        async with self._client.pipeline(transaction=True) as pipe:
            pipe.set(self.claims_prefix + UPLOAD_LEASE + upload_id, self.holder, px=_ttl_ms(until))
            pipe.hset(self.uploads_key, upload_id, location)
            await pipe.execute()

    async def abandoned_uploads(self) -> list[tuple[str, str]]:
        raw: dict[Any, Any] = await self._client.hgetall(self.uploads_key)
        uploads = [(key.decode(), value.decode()) for key, value in raw.items()]
        async with self._client.pipeline(transaction=False) as pipe:
            for upload_id, _ in uploads:
                pipe.exists(self.claims_prefix + UPLOAD_LEASE + upload_id)
            leased = await pipe.execute()
        return [upload for upload, alive in zip(uploads, leased, strict=True) if not alive]

    async def forget_upload(self, upload_id: str) -> None:
        async with self._client.pipeline(transaction=True) as pipe:
            pipe.hdel(self.uploads_key, upload_id)
            pipe.delete(self.claims_prefix + UPLOAD_LEASE + upload_id)
            await pipe.execute()

    async def entries(self, now: float | None = None) -> list[Revocation]:
        current = time.time() if now is None else now
        raw: dict[Any, Any] = await self._client.hgetall(self.entries_key)
        return [e for e in _decode_all(raw.values()) if e.until > current]

    async def prune(self, now: float | None = None) -> int:
        current = time.time() if now is None else now
        dead: list[bytes] = []
        async for field, value in self._client.hscan_iter(self.entries_key, count=1000):
            try:
                if Revocation.from_json(value).until <= current:
                    dead.append(field)
            except RevocationError:
                dead.append(field)
        for start in range(0, len(dead), 1000):
            await self._client.hdel(self.entries_key, *dead[start : start + 1000])
        return len(dead)

    async def follow(self, view: RevocationView) -> None:
        """Keep `view` in step with Redis until cancelled; reconnect with backoff."""
        backoff = 0.1
        pruned_at = time.monotonic()
        while True:
            try:
                last = await self._resync(view)
                backoff = 0.1
                while True:
                    reply: Any = await self._client.xread(
                        {self.events_key: last}, block=BLOCK_MS, count=1000
                    )
                    if cancelled_meanwhile():
                        raise asyncio.CancelledError
                    for _stream, events in reply or ():
                        for event_id, fields in events:
                            last = event_id
                            try:
                                view.apply(Revocation.from_json(fields[b"entry"]))
                            except (RevocationError, KeyError) as exc:
                                log.error("revocation event %r ignored: %s", event_id, exc)
                    view.mark_synced()
                    if time.monotonic() - pruned_at > PRUNE_EVERY:
                        pruned_at = time.monotonic()
                        await self._prune_if_elected()
            except (RedisError, OSError) as exc:
                if cancelled_meanwhile():
                    raise asyncio.CancelledError from exc
                if self.connected:
                    log.warning("revocation store %s lost: %s", redact_url(self.url), exc)
                self.connected = False
                await asyncio.sleep(backoff * random.uniform(0.5, 1.0))  # noqa: S311 - jitter
                backoff = min(MAX_BACKOFF, backoff * 2)

    async def _resync(self, view: RevocationView) -> Any:
        newest = await self._client.xrevrange(self.events_key, count=1)
        last: Any = newest[0][0] if newest else b"0-0"
        raw: dict[Any, Any] = await self._client.hgetall(self.entries_key)
        remote = {e.field: e for e in _decode_all(raw.values())}
        view.merge(remote.values())
        # Write back what this gateway enforces but Redis lost (a restart without persistence).
        now = time.time()
        missing = {
            e.field: e.to_json() for e in view.entries() if e.field not in remote and e.until > now
        }
        if missing:
            # HSETNX: an entry written meanwhile (already merged) is never narrowed. The stream
            # carries them too: a gateway that resynced first, or never saw them, gets them.
            async with self._client.pipeline(transaction=True) as pipe:
                for field, payload in missing.items():
                    pipe.hsetnx(self.entries_key, field, payload)
                    pipe.xadd(
                        self.events_key,
                        {"entry": payload},
                        maxlen=STREAM_MAXLEN,
                        approximate=True,
                    )
                await pipe.execute()
            log.warning("revocation store had lost %d live entries; restored them", len(missing))
        view.mark_synced(full=True)
        self.connected = True
        self.resyncs += 1
        log.info("revocation view resynced: %d entries from %s", len(raw), redact_url(self.url))
        return last

    async def _prune_if_elected(self) -> None:
        """One gateway of the fleet prunes per period, so the list stays bounded by itself."""
        lock_ms = int(PRUNE_EVERY * 1000)
        if await self._client.set(self.prune_lock_key, b"1", nx=True, px=lock_ms):
            dropped = await self.prune()
            if dropped:
                log.info("pruned %d expired revocations", dropped)

    async def close(self) -> None:
        with contextlib.suppress(RedisError, OSError):
            await self._client.aclose()
        if self._sentinel is not None:
            with contextlib.suppress(RedisError, OSError):
                await self._sentinel.aclose()


def _ttl_ms(until: float) -> int:
    return max(1, int((until - time.time()) * 1000))


def _decode_all(values: Any) -> list[Revocation]:
    out = []
    for value in values:
        try:
            out.append(Revocation.from_json(value))
        except RevocationError as exc:
            log.error("revocation store holds an invalid entry, ignored: %s", exc)
    return out


@dataclass(frozen=True)
class SentinelTarget:
    """What a `redis+sentinel://` URL names: where the sentinels are, which primary to ask
    them for, and the credentials of each (None: none)."""

    sentinels: tuple[tuple[str, int], ...]
    service: str
    db: int
    auth: dict[str, str]
    sentinel_auth: dict[str, str]


def cancelled_meanwhile() -> bool:
    """Whether this task was cancelled while it waited on Redis. redis-py can answer a
    cancellation that lands mid-command with a ConnectionError (it drops the connection on the
    way out), or with the command's reply, instead of CancelledError: a follower that went on
    would never stop, and the shutdown that awaits the follower would hang."""
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0


def client_for(url: str, **options: Any) -> tuple[redis.Redis, Sentinel | None]:
    """A client of the store `url` names, for revocations, upload claims and usage limits
    alike: a plain Redis URL, or the sentinels' (`redis+sentinel://`), whose client follows
    the primary through a failover."""
    if url.partition("://")[0].lower() != SENTINEL_SCHEME:
        return redis.from_url(url, **options), None
    target = parse_sentinel_url(url)
    sentinel = Sentinel(  # type: ignore[no-untyped-call]
        target.sentinels,
        sentinel_kwargs={"socket_connect_timeout": 2, "socket_timeout": 2, **target.sentinel_auth},
    )
    connection: dict[str, Any] = {**options, **target.auth, "db": target.db}
    return sentinel.master_for(target.service, **connection), sentinel


def parse_sentinel_url(url: str) -> SentinelTarget:
    """`redis+sentinel://[user:password@]host[:port],host[:port]/service[/db][?parameters]`.

    The userinfo (or `password=`/`username=`) is the primary's and replicas' credentials, as in
    a `redis://` URL; `sentinel_password=`/`sentinel_username=` are the sentinels'. Values are
    percent-decoded. ValueError says what is wrong without quoting the URL (it may hold a
    password)."""
    parts = urlsplit(url)
    if parts.scheme.lower() != SENTINEL_SCHEME:
        raise ValueError(f"not a {SENTINEL_SCHEME}:// URL")
    userinfo, _, hosts = parts.netloc.rpartition("@")
    sentinels = tuple(_host_port(host) for host in hosts.split(","))
    service, _, db = parts.path.lstrip("/").partition("/")
    if not service or "/" in db:
        raise ValueError("the path must be /<service name> or /<service name>/<db>")
    if db and not (db.isascii() and db.isdigit()):
        raise ValueError("the database must be a number")
    query = parse_qs(parts.query, keep_blank_values=True, strict_parsing=bool(parts.query))
    unknown = sorted(set(query) - set(SENTINEL_PARAMETERS))
    if unknown:
        raise ValueError(f"unknown parameter {unknown[0]!r}: give {', '.join(SENTINEL_PARAMETERS)}")
    given = {name: values[-1] for name, values in query.items()}
    user, colon, password = userinfo.partition(":")
    if user:  # the userinfo wins over a parameter, as in redis-py's own URLs
        given["username"] = unquote(user)
    if colon:
        given["password"] = unquote(password)
    auth = {k: v for k, v in given.items() if k in ("username", "password") and v}
    sentinel_auth = {
        k.removeprefix("sentinel_"): v for k, v in given.items() if k.startswith("sentinel_") and v
    }
    return SentinelTarget(sentinels, service, int(db or 0), auth, sentinel_auth)


def _host_port(text: str) -> tuple[str, int]:
    host, port = text, ""
    if text.startswith("["):  # [IPv6]:port
        host, _, rest = text[1:].partition("]")
        if rest and not rest.startswith(":"):
            raise ValueError("a sentinel must be host, host:port or [IPv6]:port")
        port = rest[1:]
    elif ":" in text:
        host, _, port = text.rpartition(":")
    if not host:
        raise ValueError("every sentinel needs a host (host:port, comma-separated)")
    if not port:
        return host, SENTINEL_PORT
    if not (port.isascii() and port.isdigit()) or not 0 < int(port) < 65536:
        raise ValueError("a sentinel's port must be a number from 1 to 65535")
    return host, int(port)


def check_url(url: str) -> None:
    """ValueError if `url` cannot name a store (only a Sentinel URL is parsed here; redis-py
    judges the others when it connects, as before)."""
    if url.partition("://")[0].lower() == SENTINEL_SCHEME:
        parse_sentinel_url(url)


def from_url(url: str, *, create: bool = True) -> RedisStore:
    """Any URL redis-py takes (`redis://`, `rediss://`, `unix://`), or a `redis+sentinel://`
    one (`parse_sentinel_url`); a shared store always exists."""
    return RedisStore(url)
