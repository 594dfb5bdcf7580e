"""A gateway that dies holding a stream lease: `gateway serve` in a subprocess streams a
MaxStreams=1 link, is killed with SIGKILL mid-body, and another gateway on the same Valkey
refuses a second viewer until the dead one's lease has run out, then admits them. The lease is an
expiry on Redis's clock, not a holder: nobody has to notice the death."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest
from yarl import URL

from signer import sign_path
from tests.integration.harness import gateway_settings, running_gateway
from tests.integration.test_process import serve, stop
from tests.polling import eventually, eventually_async
from tests.redis_server import RedisServer, redis_server

pytestmark = pytest.mark.integration

LEASE = 2.0  # limit_stream_lease, seconds
#: A renewal the dying gateway had already sent may still be run by Redis just after the kill.
IN_FLIGHT = 0.1
VIEWER, SECOND = "198.51.100.7", "203.0.113.9"


@pytest.fixture
def origin(tmp_path: Path) -> Path:
    root = tmp_path / "objects"
    root.mkdir()
    with (root / "big.bin").open("wb") as handle:
        handle.truncate(64 * 1024 * 1024)  # far more than the sockets between hold
    return root


@pytest.fixture
def redis(tmp_path: Path) -> Iterator[RedisServer]:
    with redis_server(tmp_path) as server:
        yield server


async def test_a_gateway_killed_while_streaming_frees_its_lease_within_the_lease(
    tmp_path: Path, origin: Path, redis: RedisServer
) -> None:
    shared = {
        "redis_url": redis.url,
        "trusted_proxies": "127.0.0.1/32",
        "limit_stream_lease": str(LEASE),
    }
    dying = serve(tmp_path, origin, **shared)
    try:
        settings = gateway_settings(f"file://{origin}", dying.keyring_file, **shared)
        async with running_gateway(settings) as other, aiohttp.ClientSession() as session:
            await eventually(lambda: other.services.revocations.loaded, within=30)
            link = sign_path("/big.bin", dying.keyring, expires_in=300, max_streams=1)

            async def second_viewer() -> int:
                response, _ = await other.request(
                    "GET", link, {"X-Forwarded-For": SECOND, "Range": "bytes=0-0"}
                )
                return response.status

            asked = time.time()  # the lease is taken after this, and runs LEASE at least
            url = URL(f"http://127.0.0.1:{dying.port}{link}", encoded=True)
            streaming = await session.get(url, headers={"X-Forwarded-For": VIEWER})
            try:
                assert streaming.status == 200
                await streaming.content.readexactly(1024 * 1024)  # the body is flowing
                assert await second_viewer() == 429
                stop(dying)  # SIGKILL, mid-body: no goodbye to Redis
                killed = time.time()
                refused: list[float] = []

                async def admitted() -> bool:
                    sent = time.time()
                    status = await second_viewer()
                    if status == 429:
                        refused.append(sent)
                    return status == 206

                await eventually_async(admitted, within=30)
                admitted_at = time.time()
            finally:
                streaming.close()
    finally:
        stop(dying)
    assert refused, "admitted at once: the dead gateway's lease was not held"
    # not before the lease could have lapsed (Redis counts in whole milliseconds)
    assert admitted_at >= asked + LEASE - 0.001
    assert max(refused) < killed + LEASE + IN_FLIGHT  # the bound: the lease after the death
