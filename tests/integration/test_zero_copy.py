"""Large bodies relayed inside the kernel (splice) against a real S3 server, and the same
requests with the relay switched off: the bytes the client gets must not depend on the path."""

from __future__ import annotations

import hashlib
import os
from collections.abc import AsyncIterator

import pytest

from gateway import relay
from tests.descriptors import connections_to, open_fds
from tests.integration.harness import (
    Keys,
    RunningGateway,
    make_keys,
    running_gateway,
    s3_gateway_settings,
)
from tests.polling import eventually
from tests.servers import S3Server

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(not relay.AVAILABLE, reason="splice(2) is Linux-only"),
]

SIZE = 24 * 1024 * 1024 + 7
SMALL_SIZE = 4096


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> Keys:
    return make_keys(tmp_path_factory.mktemp("keys"))


@pytest.fixture(scope="module")
def large(s3_server: S3Server) -> bytes:
    body = os.urandom(SIZE)
    s3_server.client().put_object(Bucket="private", Key="relay/large.bin", Body=body)
    s3_server.client().put_object(Bucket="private", Key="relay/small.bin", Body=body[:SMALL_SIZE])
    return body


@pytest.fixture(params=[True, False], ids=["zero_copy", "copying"])
async def gw(
    request: pytest.FixtureRequest,
    s3_server: S3Server,
    keys: Keys,
    monkeypatch: pytest.MonkeyPatch,
) -> AsyncIterator[RunningGateway]:
    settings = s3_gateway_settings(
        monkeypatch,
        s3_server,
        "s3://private/relay",
        keys.gateway_file,
        zero_copy=str(request.param).lower(),
    )
    async with running_gateway(settings) as running:
        yield running


def spliced(gw: RunningGateway) -> float:
    return gw.metric("gateway_spliced_bytes_total")


async def test_a_large_get_arrives_whole(gw: RunningGateway, keys: Keys, large: bytes) -> None:
    response, body = await gw.request("GET", keys.sign("/large.bin"))
    assert (response.status, response.headers["Content-Length"]) == (200, str(SIZE))
    assert hashlib.sha256(body).digest() == hashlib.sha256(large).digest()
    assert gw.metric("gateway_sent_bytes_total") == SIZE
    if gw.services.settings.zero_copy:
        assert SIZE // 2 < spliced(gw) <= SIZE  # the head's first bytes came through Python
    else:
        assert spliced(gw) == 0


@pytest.mark.parametrize("path", ["/large.bin", "/small.bin"])
async def test_each_streamed_answer_times_its_first_byte_once(
    gw: RunningGateway, keys: Keys, large: bytes, path: str
) -> None:
    response, body = await gw.request("GET", keys.sign(path))
    assert response.status == 200
    assert len(body) == (SIZE if path == "/large.bin" else SMALL_SIZE)
    assert gw.metric("gateway_time_to_first_byte_seconds_count", method="GET") == 1


@pytest.mark.parametrize(
    ("header", "start", "end"),
    [
        ("bytes=1000-5243879", 1000, 5243879),
        (f"bytes=-{3 * 1024 * 1024}", SIZE - 3 * 1024 * 1024, SIZE - 1),
        ("bytes=17-", 17, SIZE - 1),
    ],
    ids=["middle", "suffix", "open-ended"],
)
async def test_a_large_range_arrives_exactly(
    gw: RunningGateway, keys: Keys, large: bytes, header: str, start: int, end: int
) -> None:
    response, body = await gw.request("GET", keys.sign("/large.bin"), {"Range": header})
    assert response.status == 206
    assert response.headers["Content-Range"] == f"bytes {start}-{end}/{SIZE}"
    assert body == large[start : end + 1]


async def test_storage_connections_are_reused_after_large_bodies(
    gw: RunningGateway, keys: Keys, large: bytes
) -> None:
    for _ in range(3):
        response, body = await gw.request("GET", keys.sign("/large.bin"))
        assert (response.status, len(body)) == (200, SIZE)
    before = open_fds()
    for _ in range(3):
        response, body = await gw.request("GET", keys.sign("/large.bin"))
        assert (response.status, body[-100:]) == (200, large[-100:])
    assert open_fds() == before  # no new storage connection, no descriptor left behind


async def test_a_client_that_disconnects_mid_body_leaks_nothing(
    gw: RunningGateway, keys: Keys, large: bytes, s3_server: S3Server
) -> None:
    response, _ = await gw.request("GET", keys.sign("/large.bin"))  # pools warmed
    before = open_fds()
    async with gw.session.get(gw.url(keys.sign("/large.bin"))) as streaming:
        await streaming.content.readexactly(2 * 1024 * 1024)
        await eventually(lambda: gw.metric("gateway_streams_in_flight") == 1)
        reading = connections_to(s3_server.port)  # the body's own among them
        streaming.close()
    await eventually(lambda: gw.metric("gateway_streams_in_flight") == 0)
    # the store released the body: its half-read connection to storage is closed
    await eventually(lambda: connections_to(s3_server.port) < reading)
    assert (
        gw.metric(
            "gateway_requests_total", method="GET", status="200", reason="client_disconnected"
        )
        == 1
    )
    response, body = await gw.request("GET", keys.sign("/large.bin"))
    assert (response.status, body[:100]) == (200, large[:100])
    assert open_fds() == before
