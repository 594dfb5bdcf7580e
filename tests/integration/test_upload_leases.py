"""Upload claims are leases: a live gateway renews them while the upload runs; a gateway killed
mid-upload stops renewing, so its claims lapse within `upload_lease` and another gateway's sweep
aborts the multipart upload it left (real `gateway serve`, SeaweedFS, SQLite and Valkey)."""

from __future__ import annotations

import asyncio
import random
import re
import sqlite3
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from gateway.revocation.entries import for_url
from gateway.revocation.sqlite_store import SQLiteStore
from gateway.storage import MIN_PART_SIZE
from gateway.uploads import _object_lock
from signer import sign_path
from tests.integration.harness import (
    Keys,
    RunningGateway,
    make_keys,
    running_gateway,
    s3_gateway_settings,
    use_credentials,
)
from tests.integration.test_process import serve
from tests.polling import eventually, eventually_async
from tests.redis_server import RedisServer, redis_server
from tests.servers import S3Server

pytestmark = pytest.mark.integration

PART = MIN_PART_SIZE
PREFIX = "leases"
ORIGIN = f"s3://private/{PREFIX}"


@pytest.fixture(scope="module")
def redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    with redis_server(tmp_path_factory.mktemp("redis")) as server:
        yield server


@pytest.fixture
def path() -> str:
    return f"/{uuid.uuid4().hex}/video.bin"


def put_head(target: str, length: int) -> bytes:
    return f"PUT {target} HTTP/1.1\r\nHost: t\r\nContent-Length: {length}\r\n\r\n".encode()


def body(size: int) -> bytes:
    return random.Random(size).randbytes(size)


def past(moment: float) -> bool:
    return time.time() > moment


async def pending_uploads(s3_server: S3Server, key: str) -> list[str]:
    reply = await asyncio.to_thread(
        s3_server.client().list_multipart_uploads, Bucket="private", Prefix=key
    )
    return [upload["UploadId"] for upload in reply.get("Uploads", []) if upload["Key"] == key]


async def parts_of(s3_server: S3Server, key: str, upload_id: str) -> list[int]:
    reply = await asyncio.to_thread(
        s3_server.client().list_parts, Bucket="private", Key=key, UploadId=upload_id
    )
    return [part["PartNumber"] for part in reply.get("Parts", [])]


async def put_status(gw: RunningGateway, target: str, data: bytes) -> int:
    async with gw.session.put(gw.url(target), data=data) as response:
        await response.read()
        return response.status


@pytest.mark.parametrize("store", ["sqlite", "redis"])
async def test_a_gateway_killed_mid_upload_frees_its_claims_and_its_parts_within_the_lease(
    tmp_path: Path,
    s3_server: S3Server,
    monkeypatch: pytest.MonkeyPatch,
    request: pytest.FixtureRequest,
    path: str,
    store: str,
) -> None:
    """A one-time, no-overwrite link: the killed gateway held both claims and had parts in
    storage. Another gateway (sharing the store) accepts the link again once the lease lapsed,
    and its sweep aborts the parts."""
    shared = {"upload_lease": "1", "upload_part_size": str(PART)}
    if store == "redis":
        shared["redis_url"] = request.getfixturevalue("redis").url
    key = PREFIX + path
    use_credentials(monkeypatch, s3_server)
    killed = serve(tmp_path, ORIGIN, s3_endpoint_url=s3_server.endpoint_url, **shared)
    target = sign_path(
        path, killed.keyring, expires_in=3600, method="PUT", one_time=True, no_overwrite=True
    )
    _, writer = await asyncio.open_connection("127.0.0.1", killed.port)
    try:
        writer.write(put_head(target, 3 * PART) + body(2 * PART))
        await writer.drain()

        async def receiving() -> bool:
            # A part in storage: the upload was listed in the store before its first part went
            # out (killed between the two, only a lifecycle rule removes it: documented).
            for upload_id in await pending_uploads(s3_server, key):
                if await parts_of(s3_server, key, upload_id):
                    return True
            return False

        await eventually_async(receiving, within=30)
    finally:
        killed.process.kill()  # SIGKILL: nothing given back, nothing aborted
        killed.process.wait()
        writer.close()

    foreign = await asyncio.to_thread(  # started by another tool: never the gateway's to abort
        s3_server.client().create_multipart_upload, Bucket="private", Key=key + ".other"
    )
    settings = s3_gateway_settings(
        monkeypatch, s3_server, ORIGIN, killed.keyring_file, upload_sweep_interval="0.2", **shared
    )
    async with running_gateway(settings) as survivor:

        async def parts_gone() -> bool:
            return not await pending_uploads(s3_server, key)

        async def accepted_again() -> bool:  # 409 upload_in_progress while the lease lasts
            return await put_status(survivor, target, b"retried") == 201

        await eventually_async(parts_gone, within=30)
        await eventually_async(accepted_again, within=30)
        assert survivor.metric("gateway_abandoned_uploads_aborted_total") == 1
        assert await pending_uploads(s3_server, key + ".other") == [foreign["UploadId"]]
        async with survivor.session.get(survivor.url(killed.url(path).raw_path_qs)) as got:
            assert await got.read() == b"retried"


# --- a live gateway -------------------------------------------------------------------------

LEASE = 0.5


@pytest.fixture
def keys(tmp_path: Path) -> Keys:
    return make_keys(tmp_path)


@pytest.fixture
async def gw(
    s3_server: S3Server, keys: Keys, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[RunningGateway]:
    settings = s3_gateway_settings(
        monkeypatch,
        s3_server,
        ORIGIN,
        keys.gateway_file,
        upload_lease=str(LEASE),
        upload_part_size=str(PART),
    )
    async with running_gateway(settings) as running:
        yield running


async def test_a_live_gateway_keeps_its_claims_for_as_long_as_the_upload_runs(
    gw: RunningGateway, keys: Keys, s3_server: S3Server, path: str
) -> None:
    target = keys.sign(path, method="PUT", no_overwrite=True)
    data = body(3 * PART)
    reader, writer = await asyncio.open_connection("127.0.0.1", gw.server.port)
    try:
        writer.write(put_head(target, len(data)) + data[: 2 * PART])
        await writer.drain()
        await eventually(lambda: gw.metric("gateway_uploads_in_flight") == 1)
        leases_later = time.time() + 3 * LEASE
        await eventually(lambda: past(leases_later))

        assert await put_status(gw, keys.sign(path, method="PUT", no_overwrite=True), b"x") == 409
        writer.write(data[2 * PART :])
        await writer.drain()
        head = await reader.readuntil(b"\r\n\r\n")
    finally:
        writer.close()

    assert head.startswith(b"HTTP/1.1 201 ")
    assert await pending_uploads(s3_server, PREFIX + path) == []


async def test_an_upload_whose_claim_was_taken_over_is_stopped_with_503(
    gw: RunningGateway, keys: Keys, s3_server: S3Server, path: str
) -> None:
    """Another holder has the key now (this gateway's renewals did not reach the store in
    time): the upload must not go on as if it still held it."""
    target = keys.sign(path, method="PUT", no_overwrite=True)
    database = keys.gateway_file.parent / "revocations.sqlite3"
    reader, writer = await asyncio.open_connection("127.0.0.1", gw.server.port)
    other = SQLiteStore(database)
    try:
        writer.write(put_head(target, 3 * PART) + body(2 * PART))
        await writer.drain()
        await eventually(lambda: gw.metric("gateway_uploads_in_flight") == 1)
        lock = _object_lock(PREFIX + path)
        with sqlite3.connect(database) as db:
            db.execute("DELETE FROM claims WHERE token_id = ?", (lock,))  # as if it lapsed
        assert await other.claim_once(lock, time.time() + 300)

        head = await reader.readuntil(b"\r\n\r\n")
        # By its length, not to the end: the body is unfinished, so aiohttp would hold the
        # connection for its lingering time (10 s) before closing it.
        length = re.search(rb"(?im)^content-length: *(\d+)\r$", head)
        assert length is not None, head
        answer = await reader.readexactly(int(length[1]))
    finally:
        writer.close()
        await other.close()

    assert head.startswith(b"HTTP/1.1 503 ")
    assert b'"revocation_store_unavailable"' in answer
    await eventually(lambda: gw.metric("gateway_uploads_in_flight") == 0)
    assert await pending_uploads(s3_server, PREFIX + path) == []


async def test_a_used_one_time_link_stays_claimed_after_the_lease(
    gw: RunningGateway, keys: Keys, path: str
) -> None:
    target = keys.sign(path, method="PUT", one_time=True)
    assert await put_status(gw, target, b"once") == 201
    leases_later = time.time() + 3 * LEASE
    await eventually(lambda: past(leases_later))
    other = SQLiteStore(keys.gateway_file.parent / "revocations.sqlite3")
    try:
        assert await other.claim_once(for_url(target, skew=0).value, time.time() + 300) is False
    finally:
        await other.close()
