"""The fleet's limit store: Redis (or Valkey), one Lua script per operation.

Layout, per link (its token id): a hash `<ns>:<id>` (`uses`, `served`), a sorted set
`<ns>:<id>:streams` (client address -> lease end, ms on Redis's clock) and a string
`<ns>:<id>:rate` (when the link's schedule is next free, ms). Every key expires at the link's
Expires (plus skew), so nothing outlives the link; a subject's leases (SubjectStreams,
`<ns>:sub-<digest>:streams`) expire with the last of them instead, and a key's life is only
ever extended. `admit` judges all limits and then takes
the lease, counts the use and reserves the bytes in one script (scripts run atomically), so
twenty gateways racing for the last use get exactly one. A lease is an expiry, not a holder:
a gateway that dies stops renewing and its client's slot lapses on Redis's clock within the
lease. Counts are Lua numbers (doubles): exact to 2^53 bytes.
"""

from __future__ import annotations

from typing import Any, Final

import redis.asyncio as redis
from redis.exceptions import RedisError

from gateway.limits import Ask, LimitStoreError, Usage
from gateway.revocation.redis_store import client_for

NAMESPACE: Final = "edge-gateway:limits"

_NOW: Final = "local t = redis.call('TIME') local now = t[1] * 1000 + math.floor(t[2] / 1000)\n"
# KEYS: counts, streams. ARGV: client, max_streams, lease ms, max_uses, use (0/1), max_served,
# reserve, expire-at ms, streams of a subject (0/1).
_ADMIT: Final = (
    _NOW
    + """
local client = ARGV[1]
local max_streams, lease = tonumber(ARGV[2]), tonumber(ARGV[3])
local max_uses, use = tonumber(ARGV[4]), tonumber(ARGV[5])
local max_served, reserve, expire = tonumber(ARGV[6]), tonumber(ARGV[7]), tonumber(ARGV[8])
if max_streams > 0 then
    redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now)
    if not redis.call('ZSCORE', KEYS[2], client)
        and redis.call('ZCARD', KEYS[2]) >= max_streams then
        return 'too_many_streams'
    end
end
if max_uses > 0 and use == 1 then
    if tonumber(redis.call('HGET', KEYS[1], 'uses') or '0') >= max_uses then
        return 'uses_exhausted'
    end
end
if max_served > 0 then
    if tonumber(redis.call('HGET', KEYS[1], 'served') or '0') + reserve > max_served then
        return 'bytes_exhausted'
    end
end
if max_streams > 0 then
    redis.call('ZADD', KEYS[2], 'GT', now + lease, client)  -- GT still adds a new client
    local at = expire
    if ARGV[9] == '1' then at = now + lease end
    local ttl = redis.call('PTTL', KEYS[2])
    if ttl < 0 or now + ttl < at then redis.call('PEXPIREAT', KEYS[2], at) end
end
local counted = false
if max_uses > 0 and use == 1 then redis.call('HINCRBY', KEYS[1], 'uses', 1) counted = true end
if max_served > 0 and reserve > 0 then
    redis.call('HINCRBY', KEYS[1], 'served', ARGV[7]) counted = true
end
if counted then redis.call('PEXPIREAT', KEYS[1], expire) end
return 'ok'
"""
)
# KEYS: streams. ARGV: client, lease ms. Extend, never shorten; never revive a lapsed lease.
_RENEW: Final = (
    _NOW
    + """
if redis.call('ZSCORE', KEYS[1], ARGV[1]) then
    local at = now + tonumber(ARGV[2])
    redis.call('ZADD', KEYS[1], 'GT', 'XX', at, ARGV[1])
    local ttl = redis.call('PTTL', KEYS[1])
    if ttl >= 0 and now + ttl < at then redis.call('PEXPIREAT', KEYS[1], at) end
end
return 0
"""
)
# KEYS: counts. ARGV: unsent, uses.
_REFUND: Final = """
local served = tonumber(redis.call('HGET', KEYS[1], 'served') or '0')
if served > 0 and tonumber(ARGV[1]) > 0 then
    redis.call('HSET', KEYS[1], 'served', string.format('%d', math.max(0, served - ARGV[1])))
end
local uses = tonumber(redis.call('HGET', KEYS[1], 'uses') or '0')
if uses > 0 and tonumber(ARGV[2]) > 0 then
    redis.call('HSET', KEYS[1], 'uses', string.format('%d', math.max(0, uses - ARGV[2])))
end
return 0
"""
# KEYS: schedule. ARGV: bytes, rate, expire-at ms. Returns the wait in microseconds.
_PACE: Final = (
    "local t = redis.call('TIME') local now = t[1] * 1000000 + t[2]\n"
    + """
local free = tonumber(redis.call('GET', KEYS[1]) or '0')
local start = math.max(now, free)
local after = start + math.floor(tonumber(ARGV[1]) * 1000000 / tonumber(ARGV[2]))
redis.call('SET', KEYS[1], string.format('%d', after), 'PXAT', ARGV[3])
return start - now
"""
)


class RedisLimitStore:
    name = "redis"

    def __init__(self, url: str, *, namespace: str = NAMESPACE) -> None:
        self.namespace = namespace
        self._client: redis.Redis = client_for(
            url, socket_connect_timeout=2, socket_timeout=2, decode_responses=True
        )[0]
        self._admit = self._client.register_script(_ADMIT)
        self._renew = self._client.register_script(_RENEW)
        self._refund = self._client.register_script(_REFUND)
        self._pace = self._client.register_script(_PACE)

    def _keys(self, link: str) -> tuple[str, str, str]:
        base = f"{self.namespace}:{link}"
        return base, f"{base}:streams", f"{base}:rate"

    async def _call(self, script: Any, keys: list[str], args: list[Any]) -> Any:
        try:
            return await script(keys=keys, args=args)
        except (RedisError, OSError) as exc:
            raise LimitStoreError(f"limit store: {type(exc).__name__}") from None

    async def open(self) -> None:
        """Nothing to create; a Redis that is down is judged per request (fail closed)."""

    async def close(self) -> None:
        await self._client.aclose()

    async def admit(self, link: str, ask: Ask) -> str:
        counts = self._keys(link)[0]
        streams = self._keys(ask.streams_of or link)[1]
        verdict = await self._call(
            self._admit,
            [counts, streams],
            [
                ask.client,
                ask.max_streams,
                int(ask.lease * 1000),
                ask.max_uses,
                1 if ask.use else 0,
                ask.max_served,
                ask.reserve,
                int(ask.expires * 1000),
                1 if ask.streams_of else 0,
            ],
        )
        return str(verdict)

    async def renew(self, link: str, client: str, lease: float, expires: float) -> None:
        await self._call(self._renew, [self._keys(link)[1]], [client, int(lease * 1000)])

    async def refund(self, link: str, unsent: int, uses: int = 0) -> None:
        await self._call(self._refund, [self._keys(link)[0]], [unsent, uses])

    async def pace(self, link: str, rate: int, count: int, expires: float) -> float:
        waited = await self._call(
            self._pace, [self._keys(link)[2]], [count, rate, int(expires * 1000)]
        )
        return int(waited) / 1_000_000

    async def usage(self, link: str) -> Usage:
        counts, streams, _ = self._keys(link)
        try:
            now_s, now_us = await self._client.time()
            held: Any = await self._client.zrangebyscore(
                streams, now_s * 1000 + now_us // 1000, "+inf", withscores=True
            )
            values = await self._client.hgetall(counts)
        except (RedisError, OSError) as exc:
            raise LimitStoreError(f"limit store: {type(exc).__name__}") from None
        return Usage(
            uses=int(values.get("uses", 0)),
            served=int(values.get("served", 0)),
            streams={str(client): float(until) / 1000 for client, until in held},
        )

    async def reset(self, link: str) -> None:
        try:
            await self._client.delete(*self._keys(link))
        except (RedisError, OSError) as exc:
            raise LimitStoreError(f"limit store: {type(exc).__name__}") from None


def from_url(url: str) -> RedisLimitStore:
    return RedisLimitStore(url)
