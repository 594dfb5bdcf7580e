"""Usage limits across a fleet: two gateways on one real Valkey/Redis, the limits counted
together (Lua scripts, one round trip per limited request). Client addresses come from
X-Forwarded-For (loopback is a trusted proxy here), so one test can be several viewers."""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from gateway.cli import main
from gateway.limits import Ask
from gateway.limits.redis_store import RedisLimitStore
from tests.integration.harness import (
    Keys,
    RunningGateway,
    gateway_settings,
    make_keys,
    running_gateway,
)
from tests.polling import eventually, eventually_async
from tests.redis_server import RedisServer, redis_server
from tests.unit.test_limits_cli import token_of

BODY = bytes(range(256)) * 4  # 1024 bytes
SIZE = len(BODY)
LEASE = "1"


@pytest.fixture
def objects(tmp_path: Path) -> Path:
    root = tmp_path / "objects"
    root.mkdir()
    (root / "film.mp4").write_bytes(BODY)
    return root


@pytest.fixture
def keys(tmp_path: Path) -> Keys:
    return make_keys(tmp_path)


@pytest.fixture
def redis(tmp_path: Path) -> Iterator[RedisServer]:
    with redis_server(tmp_path) as server:
        yield server


@contextlib.asynccontextmanager
async def fleet(
    objects: Path, keys: Keys, redis: RedisServer, **extra: str
) -> AsyncIterator[list[RunningGateway]]:
    async with contextlib.AsyncExitStack() as stack:
        gateways = []
        for _ in range(2):
            settings = gateway_settings(
                f"file://{objects}",
                keys.gateway_file,
                redis_url=redis.url,
                trusted_proxies="127.0.0.1/32",
                limit_stream_lease=LEASE,
                **extra,
            )
            gateway = await stack.enter_async_context(running_gateway(settings))
            view = gateway.services.revocations
            await eventually(lambda view=view: view.loaded, within=30)  # type: ignore[misc]
            gateways.append(gateway)
        yield gateways


async def fetch(
    gw: RunningGateway, link: str, client: str = "198.51.100.1", **headers: str
) -> tuple[int, bytes]:
    response, body = await gw.request("GET", link, {"X-Forwarded-For": client, **headers})
    return response.status, body


def error(code: str) -> bytes:
    return b'{"error":"%s"}\n' % code.encode()


@pytest.mark.parametrize("uses", [1, 3])
async def test_max_uses_under_twenty_concurrent_attempts_on_two_gateways_lets_exactly_n_through(
    objects: Path, keys: Keys, redis: RedisServer, uses: int
) -> None:
    link = keys.sign("/film.mp4", max_uses=uses)
    async with fleet(objects, keys, redis) as (a, b):
        answers = await asyncio.gather(
            *(fetch((a, b)[i % 2], link, f"198.51.100.{i}") for i in range(20))
        )
    statuses = sorted(status for status, _ in answers)
    assert statuses == [200] * uses + [403] * (20 - uses)
    assert {body for status, body in answers if status == 403} == {error("uses_exhausted")}


async def test_max_streams_is_one_slot_for_the_whole_fleet(
    objects: Path, keys: Keys, redis: RedisServer
) -> None:
    link = keys.sign("/film.mp4", max_streams=1)
    viewer, other = "198.51.100.7", "203.0.113.9"
    async with fleet(objects, keys, redis) as (a, b):
        assert await fetch(a, link, viewer) == (200, BODY)
        assert await fetch(b, link, other) == (429, error("too_many_streams"))
        assert await fetch(b, link, viewer, Range="bytes=0-9") == (206, BODY[:10])


async def test_max_served_counts_ranges_on_both_gateways_against_one_budget(
    objects: Path, keys: Keys, redis: RedisServer
) -> None:
    link = keys.sign("/film.mp4", max_served=SIZE + 100)
    async with fleet(objects, keys, redis) as (a, b):
        assert await fetch(a, link, Range="bytes=0-511") == (206, BODY[:512])
        assert await fetch(b, link, Range="bytes=512-1023") == (206, BODY[512:])
        assert await fetch(a, link) == (403, error("bytes_exhausted"))  # 1024 > 100 left
        assert await fetch(b, link, Range="bytes=0-99") == (206, BODY[:100])
        assert await fetch(a, link, Range="bytes=0-0") == (403, error("bytes_exhausted"))


async def test_a_lease_of_a_gateway_that_died_lapses_within_the_lease(
    objects: Path, keys: Keys, redis: RedisServer
) -> None:
    link = keys.sign("/film.mp4", max_streams=1)
    async with fleet(objects, keys, redis) as (a, _):
        assert await fetch(a, link, "198.51.100.7") == (200, BODY)
        token_id = await _the_limited_links_token_id(redis)
        # A gateway that took a lease for another client and died: it never renews.
        dead = RedisLimitStore(redis.url)
        await dead.reset(token_id)
        ask = Ask("192.0.2.66", 1, float(LEASE), 0, False, 0, 0, time.time() + 300)
        assert await dead.admit(token_id, ask) == "ok"
        await dead.close()
        taken = time.monotonic()
        assert await fetch(a, link, "198.51.100.7") == (429, error("too_many_streams"))

        async def admitted() -> bool:
            return (await fetch(a, link, "198.51.100.7"))[0] == 200

        await eventually_async(admitted, within=30)
        assert time.monotonic() - taken < 30  # the bound: the lease, on Redis's clock


async def _the_limited_links_token_id(redis: RedisServer) -> str:
    """The token id of the one limited link the test used, from its keys in Redis."""
    store = RedisLimitStore(redis.url)
    try:
        names = [
            key async for key in store._client.scan_iter(match="edge-gateway:limits:*:streams")
        ]
    finally:
        await store.close()
    assert len(names) == 1
    return str(names[0]).split(":")[2]


@pytest.mark.parametrize(
    ("fail_open", "limited"), [("false", (503, error("limits_unavailable"))), ("true", (200, BODY))]
)
async def test_with_redis_stopped_a_limited_link_fails_closed_unless_told_and_others_are_served(
    objects: Path, keys: Keys, redis: RedisServer, fail_open: str, limited: tuple[int, bytes]
) -> None:
    link = keys.sign("/film.mp4", max_uses=5)
    async with fleet(objects, keys, redis, limit_fail_open=fail_open) as (a, _):
        assert await fetch(a, link) == (200, BODY)
        redis.stop()
        assert await fetch(a, link) == limited
        assert await fetch(a, keys.sign("/film.mp4")) == (200, BODY)


async def test_subject_streams_are_one_slot_for_the_subject_across_links_and_gateways(
    objects: Path, keys: Keys, redis: RedisServer
) -> None:
    scope = {"sub": "household-7", "max_streams": 1, "subject_streams": True}
    first, second = (keys.sign("/film.mp4", **scope, expires_in=e) for e in (300, 301))
    async with fleet(objects, keys, redis) as (a, b):
        assert await fetch(a, first, "198.51.100.7") == (200, BODY)
        assert await fetch(b, second, "203.0.113.9") == (429, error("too_many_streams"))
        assert await fetch(b, second, "198.51.100.7") == (200, BODY)


async def test_the_limits_commands_show_and_reset_the_fleets_counts_in_redis(
    objects: Path,
    keys: Keys,
    redis: RedisServer,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    for name in list(os.environ):
        if name.startswith("GATEWAY_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("GATEWAY_REDIS_URL", redis.url)
    link = keys.sign("/film.mp4", max_uses=2)
    async with fleet(objects, keys, redis) as (a, b):
        assert await fetch(a, link) == (200, BODY)
        assert await fetch(b, link) == (200, BODY)
        assert await fetch(a, link) == (403, error("uses_exhausted"))
        assert await asyncio.to_thread(main, ["limits", "show", link]) == 0
        shown = capsys.readouterr().out.splitlines()
        assert shown[:2] == [f"link {token_of(link)} (store: redis)", "  uses      2 of 2"]
        assert await asyncio.to_thread(main, ["limits", "reset", token_of(link)]) == 0
        assert await fetch(b, link) == (200, BODY)


RATE = 200_000  # bytes per second, for the whole link
WINDOW = 10.0  # seconds the bytes are counted over


@pytest.mark.long
async def test_rate_paces_two_downloads_on_two_gateways_to_r_together(
    objects: Path, keys: Keys, redis: RedisServer
) -> None:
    """One Rate link, one download through each gateway at once: the bytes both receive over a
    10 s window add up to Rate x 10 s within 10 %. The link's one schedule in Redis paces them
    together (each alone would get R; unpaced, both would be done in milliseconds)."""
    (objects / "big.bin").write_bytes(os.urandom(4 * RATE * int(WINDOW) // 2))  # outlasts it
    link = keys.sign("/big.bin", rate=RATE)
    arrivals: list[tuple[float, int]] = []
    started = time.monotonic()

    async def download(gw: RunningGateway, client: str) -> None:
        headers = {"X-Forwarded-For": client}
        async with gw.session.get(gw.url(link), headers=headers) as response:
            assert response.status == 200
            async for data in response.content.iter_any():
                arrivals.append((time.monotonic(), len(data)))
                if time.monotonic() > started + WINDOW:
                    return

    async with fleet(objects, keys, redis, chunk_size="16384") as (a, b):
        started = time.monotonic()
        await asyncio.gather(download(a, "198.51.100.1"), download(b, "198.51.100.2"))
    counted = sum(size for at, size in arrivals if at <= started + WINDOW)
    assert abs(counted - RATE * WINDOW) <= 0.1 * RATE * WINDOW, counted
