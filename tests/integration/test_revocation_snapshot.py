"""Revocations fail closed when Redis is down at start: a gateway starts from its local snapshot
of the fleet's list, and with none it refuses verified links until its first sync.

Real Valkey; the gateways serve a local directory (the revocation path does not depend on it).
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway.revocation import Kind, Revocation
from gateway.revocation.redis_store import RedisStore
from gateway.revocation.snapshot import NoSnapshot, SnapshotError, read, write
from gateway.settings import Settings
from tests.integration.harness import Keys, gateway_settings, make_keys, running_gateway
from tests.integration.test_revocation import Relay, poll_until, status, token_of
from tests.polling import eventually
from tests.redis_server import RedisServer, redis_server
from tests.servers import free_port

LIFETIME = 604800.0  # max_link_lifetime's default


@pytest.fixture
def keys(tmp_path: Path) -> Keys:
    (tmp_path / "objects").mkdir()
    (tmp_path / "objects" / "doc.txt").write_bytes(b"document")
    return make_keys(tmp_path)


@pytest.fixture
def redis(tmp_path: Path) -> Iterator[RedisServer]:
    with redis_server(tmp_path) as server:
        yield server


def settings_for(keys: Keys, redis_url: str, **extra: str) -> Settings:
    """With Redis down, a gateway waits min(5 s, the staleness bound) for it at start: 1 s."""
    objects = keys.gateway_file.parent / "objects"
    extra.setdefault("revocation_max_staleness", "1")
    return gateway_settings(f"file://{objects}", keys.gateway_file, redis_url=redis_url, **extra)


def snapshot_of(settings: Settings) -> Path:
    path = settings.revocation.snapshot
    assert path is not None
    return path


def holds(settings: Settings, entry: Revocation) -> bool:
    """Whether the gateways' snapshot file holds `entry` (any version of it that reads whole)."""
    try:
        found = read(
            snapshot_of(settings),
            store=settings.revocation.store_url,
            now=time.time(),
            max_age=LIFETIME,
        )
    except SnapshotError:
        return False
    return entry in found.entries


async def test_a_gateway_started_while_redis_is_down_enforces_the_snapshot(
    keys: Keys, redis: RedisServer
) -> None:
    revoked = keys.sign("/doc.txt", expires_in=600, sub="user-9")
    untouched = keys.sign("/doc.txt", expires_in=600, sub="user-7")
    settings = settings_for(keys, redis.url)
    entry = Revocation(Kind.SUB, "user-9", 2_000_000_000.0, time.time())
    async with running_gateway(settings) as first:
        writer = RedisStore(redis.url)
        await writer.add(entry)
        await writer.close()
        await poll_until(first, revoked, 403)
        await eventually(lambda: holds(settings, entry))  # written while it runs, not on exit

        redis.stop()

    async with running_gateway(settings) as second:
        assert not second.services.revocation_store.connected
        response, body = await second.request("GET", revoked)
        assert (response.status, json.loads(body)) == (403, {"error": "revoked"})
        assert await status(second, untouched) == 200
        readiness = await second.admin_get("/readyz")
        assert readiness[0] == 503  # its age is its lag, past the bound of 1 s
        assert "revocations stale" in readiness[1]


def unusable_snapshot(path: Path, store: str, state: str, entry: Revocation) -> None:
    """Leave `path` in `state`; each unusable snapshot holds `entry`, so using it by mistake
    would change nothing for the link under test: only "no list at all" refuses it."""
    if state == "none":
        return
    synced_at = time.time() - (LIFETIME + 60 if state == "older-than-max-link-lifetime" else 5)
    if state == "of-another-store":
        store = "redis://10.0.0.9:6379/0"
    write(path, store=store, synced_at=synced_at, entries=[entry])
    if state == "cut-short":
        path.write_bytes(path.read_bytes()[:-3])


@pytest.mark.parametrize(
    "state", ["none", "older-than-max-link-lifetime", "of-another-store", "cut-short"]
)
async def test_with_neither_redis_nor_a_usable_snapshot_verified_links_get_503(
    keys: Keys, state: str
) -> None:
    link = keys.sign("/doc.txt", expires_in=600)
    settings = settings_for(keys, f"redis://127.0.0.1:{free_port()}/0")  # nothing listens
    other = Revocation(Kind.SUB, "someone-else", 2_000_000_000.0, time.time())
    unusable_snapshot(snapshot_of(settings), settings.revocation.store_url, state, other)
    async with running_gateway(settings) as gateway:
        response, body = await gateway.request("GET", link)
        forged, _ = await gateway.request(
            "GET", link[:-4] + ("B" if link[-4:] == "AAAA" else "A") * 4
        )

        assert (response.status, json.loads(body)) == (503, {"error": "revocations_unavailable"})
        assert (
            gateway.metric(
                "gateway_requests_total",
                method="GET",
                status="503",
                reason="revocations_unavailable",
            )
            == 1
        )
        assert forged.status == 403  # judged first: a forgery learns nothing about the store
        assert not gateway.services.revocations.loaded


@pytest.mark.parametrize(
    ("fail_open", "expected"),
    [("false", (503, b'{"error":"revocations_unavailable"}\n')), ("true", (200, b"document"))],
    ids=["fail-closed-by-default", "revocation_fail_open"],
)
async def test_only_the_fail_open_setting_serves_without_the_list(
    keys: Keys, fail_open: str, expected: tuple[int, bytes]
) -> None:
    link = keys.sign("/doc.txt", expires_in=600)
    nowhere = f"redis://127.0.0.1:{free_port()}/0"
    settings = settings_for(keys, nowhere, revocation_fail_open=fail_open)
    async with running_gateway(settings) as gateway:
        response, body = await gateway.request("GET", link)
    assert (response.status, body) == expected


async def test_once_redis_is_back_a_gateway_without_the_list_serves_normally(
    keys: Keys, redis: RedisServer
) -> None:
    revoked = keys.sign("/doc.txt", expires_in=600)
    untouched = keys.sign("/doc.txt", expires_in=600, sub="user-7")
    writer = RedisStore(redis.url)
    await writer.add(Revocation(Kind.TOKEN, token_of(revoked), 2_000_000_000.0))
    await writer.close()
    relay = Relay(redis.port)  # not started: Redis is unreachable through it
    settings = settings_for(keys, relay.url)
    async with running_gateway(settings) as gateway:
        assert await status(gateway, untouched) == 503

        await relay.start()

        await poll_until(gateway, untouched, 200)
        assert await status(gateway, revoked) == 403
    await relay.cut()


async def test_a_gateway_writes_its_snapshot_after_the_first_sync(
    keys: Keys, redis: RedisServer
) -> None:
    entry = Revocation(Kind.SUB, "user-9", 2_000_000_000.0, time.time())
    writer = RedisStore(redis.url)
    await writer.add(entry)
    await writer.close()
    settings = settings_for(keys, redis.url)
    with pytest.raises(NoSnapshot):
        read(snapshot_of(settings), store=redis.url, now=time.time(), max_age=LIFETIME)

    async with running_gateway(settings):
        await eventually(lambda: holds(settings, entry))


async def test_entries_from_the_snapshot_are_written_back_to_a_redis_that_lacks_them(
    keys: Keys, redis: RedisServer
) -> None:
    entry = Revocation(Kind.SUB, "user-9", 2_000_000_000.0, time.time())
    settings = settings_for(keys, redis.url)
    write(snapshot_of(settings), store=redis.url, synced_at=time.time(), entries=[entry])

    async with running_gateway(settings) as gateway:
        await eventually(lambda: gateway.services.revocation_store.resyncs >= 1)

    store = RedisStore(redis.url)
    assert await store.entries() == [entry]  # Redis restarted empty: the snapshot restored it
    await store.close()
