"""The fleet's revocation store without a single point of failure: Valkey with Sentinel.

Real processes: a primary, a replica of it and three sentinels (all `valkey-server`), and three
in-process gateways whose `redis_url` names the sentinels. The primary is killed (SIGKILL) and
the sentinels promote the replica. Replication is asynchronous, so the case that matters is an
entry the old primary acknowledged and the replica never got: the gateways enforce it, so their
resync after the failover writes it back into the new primary.

The measurements (readiness lost, the longest gap between confirmed syncs, propagation after the
failover) are printed for the record (`pytest -s`); what is asserted is the behaviour.
"""

from __future__ import annotations

import asyncio
import contextlib
import statistics
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import redis.asyncio as redis

from gateway.limits.redis_store import NAMESPACE as LIMITS_NAMESPACE
from gateway.revocation import Kind, Revocation
from gateway.revocation.redis_store import RedisStore
from tests.integration.harness import Keys, RunningGateway, gateway_settings, make_keys
from tests.integration.test_revocation import fleet, poll_until, status, token_of
from tests.polling import eventually, eventually_async
from tests.redis_server import SentinelGroup, sentinel_group

FOREVER = 2_000_000_000.0
#: Write an entry on the primary only: `redis.set_repl(REPL_NONE)` keeps it from the replicas,
#: exactly what an asynchronous replica that had not caught up yet is missing after a failover.
UNREPLICATED_ADD = """
redis.set_repl(redis.REPL_NONE)
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('XADD', KEYS[2], '*', 'entry', ARGV[2])
return 1
"""
AFTER_FAILOVER = 50  # revocations timed once the replica is the primary


@pytest.fixture
def keys(tmp_path: Path) -> Keys:
    return make_keys(tmp_path)


@pytest.fixture
def objects(tmp_path: Path) -> Path:
    root = tmp_path / "objects"
    root.mkdir()
    (root / "doc.txt").write_bytes(b"document")
    return root


@pytest.fixture
def group(tmp_path: Path) -> Iterator[SentinelGroup]:
    with sentinel_group(tmp_path / "valkey") as started:
        yield started


class Watch:
    """Samples each gateway's readiness and revocation sync lag until stopped."""

    def __init__(self, gateways: list[RunningGateway]) -> None:
        self.gateways = gateways
        self.not_ready: dict[int, float] = {}  # gateway index -> seconds seen not ready
        self.longest_lag = 0.0
        self._task: asyncio.Task[None] | None = None

    async def _run(self) -> None:
        last = time.monotonic()
        while True:
            for index, gateway in enumerate(self.gateways):
                self.longest_lag = max(self.longest_lag, gateway.services.revocations.lag())
                if (await gateway.admin_get("/readyz"))[0] != 200:
                    self.not_ready[index] = self.not_ready.get(index, 0.0) + (
                        time.monotonic() - last
                    )
            last = time.monotonic()
            await asyncio.sleep(0.02)

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[Watch]:
        self._task = asyncio.create_task(self._run())
        try:
            yield self
        finally:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task


async def add_until_acknowledged(store: RedisStore, entry: Revocation) -> None:
    """What an operator's tool does: retry until the store acknowledges (a failover is on)."""
    async with asyncio.timeout(30):
        while True:
            try:
                await store.add(entry)
                return
            except (redis.RedisError, OSError):
                await asyncio.sleep(0.05)


async def test_a_revocation_the_replica_never_got_survives_the_failover_everywhere(
    objects: Path, keys: Keys, group: SentinelGroup, tmp_path: Path
) -> None:
    lost_link = keys.sign("/doc.txt", expires_in=600, sub="lost-in-replication")
    during = [keys.sign("/doc.txt", expires_in=600, sub=f"during-{i}") for i in range(400)]
    after = [keys.sign("/doc.txt", expires_in=600, sub=f"after-{i}") for i in range(AFTER_FAILOVER)]
    primary = redis.Redis(port=group.primary.port)
    replica = redis.Redis(port=group.replica.port)
    writer = RedisStore(group.url)
    async with fleet(3, objects, keys, group.url) as gateways, Watch(gateways).running() as watch:
        for gateway in gateways:
            assert await status(gateway, lost_link) == 200
        lost = Revocation(Kind.TOKEN, token_of(lost_link), FOREVER)
        await primary.eval(
            UNREPLICATED_ADD, 2, writer.entries_key, writer.events_key, lost.field, lost.to_json()
        )
        for gateway in gateways:
            await poll_until(gateway, lost_link, 403)
        assert await replica.hget(writer.entries_key, lost.field) is None  # the case is real

        acknowledged: list[str] = []

        async def revoke_meanwhile() -> None:
            for link in during:
                entry = Revocation(Kind.TOKEN, token_of(link), FOREVER)
                await add_until_acknowledged(writer, entry)
                acknowledged.append(link)
                await asyncio.sleep(0.01)

        revoking = asyncio.create_task(revoke_meanwhile())
        await eventually(lambda: len(acknowledged) >= 10)
        group.primary.kill()
        killed = time.monotonic()
        await eventually(lambda: group.primary_port() == group.replica.port, within=30)
        promoted = time.monotonic() - killed
        count_at_promotion = len(acknowledged)
        await eventually(lambda: len(acknowledged) >= count_at_promotion + 10, within=30)
        revoking.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await revoking

        async def written_back() -> bool:
            return await replica.hget(writer.entries_key, lost.field) is not None

        await eventually_async(written_back, within=30)
        for gateway in gateways:
            await poll_until(gateway, lost_link, 403, within=30)
            for link in acknowledged:
                await poll_until(gateway, link, 403, within=30)
        stored = {e.value for e in await RedisStore(group.url).entries()}
        assert {token_of(link) for link in [lost_link, *acknowledged]} <= stored

        delays = []
        for link in after:
            await writer.add(Revocation(Kind.TOKEN, token_of(link), FOREVER))
            started = time.perf_counter()
            for gateway in gateways:
                await poll_until(gateway, link, 403)
            delays.append(time.perf_counter() - started)

    # A gateway that never saw the lost entry (a new one, without a snapshot) finds it stored.
    fresh = gateway_settings(
        f"file://{objects}",
        keys.gateway_file,
        redis_url=group.url,
        revocation_db=str(tmp_path / "fresh" / "revocations.sqlite3"),
    )
    async with fleet_of_settings(fresh) as newcomer:
        assert await status(newcomer, lost_link) == 403
    await writer.close()
    await primary.aclose()
    await replica.aclose()

    quantiles = statistics.quantiles(delays, n=100)
    print(
        f"\nfailover: promoted {promoted:.2f}s after the kill; {len(acknowledged)} revocations "
        f"acknowledged meanwhile; readiness lost {watch.not_ready or 'never'}; longest sync gap "
        f"{watch.longest_lag:.2f}s; after it, propagation to all 3 gateways p50 "
        f"{quantiles[49] * 1000:.1f} ms, p99 {quantiles[98] * 1000:.1f} ms"
    )
    assert watch.not_ready == {}


@contextlib.asynccontextmanager
async def fleet_of_settings(settings: object) -> AsyncIterator[RunningGateway]:
    from gateway.settings import Settings
    from tests.integration.harness import running_gateway

    assert isinstance(settings, Settings)
    async with running_gateway(settings) as gateway:
        view = gateway.services.revocations
        await eventually(lambda: view.loaded and gateway.services.revocation_store.connected, 30)
        yield gateway


async def test_upload_claims_go_through_the_sentinels_and_hold_across_a_failover(
    group: SentinelGroup,
) -> None:
    holder, rival = RedisStore(group.url), RedisStore(group.url)
    until = time.time() + 60
    assert await holder.claim_once("one-time-link", until)
    assert await replica_has(group, holder.claims_prefix + "one-time-link")

    group.primary.kill()
    await eventually(lambda: group.primary_port() == group.replica.port, within=30)

    async with asyncio.timeout(30):
        while True:
            with contextlib.suppress(redis.RedisError, OSError):
                renewed = await holder.renew("one-time-link", until + 30)
                break
            await asyncio.sleep(0.05)
    assert renewed
    assert not await rival.claim_once("one-time-link", until)
    await holder.close()
    await rival.close()


async def replica_has(group: SentinelGroup, key: str) -> bool:
    """Whether the replica got `key` (replication is asynchronous: wait for it, bounded)."""
    replica = redis.Redis(port=group.replica.port)

    async def present() -> bool:
        return bool(await replica.exists(key))

    try:
        await eventually_async(present, within=10)
        return True
    finally:
        await replica.aclose()


async def test_a_limited_link_keeps_working_and_keeps_its_count_across_a_failover(
    objects: Path, keys: Keys, group: SentinelGroup
) -> None:
    """Usage limits reach Redis through the sentinels too. A count the replica got survives
    the promotion: the link serves its last use after it, then refuses (403 uses_exhausted).
    Until the gateway reaches the new primary it answers 503 (limits_unavailable): asked
    again until it does not."""
    link = keys.sign("/doc.txt", expires_in=600, max_uses=3)
    async with fleet(1, objects, keys, group.url) as (gateway,):
        assert [await status(gateway, link) for _ in range(2)] == [200, 200]
        assert await replica_counted(group, uses=2)

        group.primary.kill()
        await eventually(lambda: group.primary_port() == group.replica.port, within=30)
        answers: list[int] = []

        async def answered() -> bool:
            answers.append(await status(gateway, link))
            return answers[-1] != 503

        await eventually_async(answered, within=30)

        assert answers[-1] == 200  # the third and last use, counted on the new primary
        assert await status(gateway, link) == 403


async def replica_counted(group: SentinelGroup, *, uses: int) -> bool:
    """Whether the replica holds a link's use count of `uses` (replication is asynchronous:
    wait for it, bounded)."""
    replica = redis.Redis(port=group.replica.port, decode_responses=True)

    async def counted() -> bool:
        async for key in replica.scan_iter(match=f"{LIMITS_NAMESPACE}:*"):
            if await replica.type(key) == "hash" and await replica.hget(key, "uses") == str(uses):
                return True
        return False

    try:
        await eventually_async(counted, within=10)
        return True
    finally:
        await replica.aclose()
