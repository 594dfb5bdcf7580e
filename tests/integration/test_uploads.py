"""Signed uploads (PUT) through the gateway into a real S3 server (SeaweedFS), over loopback.

The gateway runs with the smallest part size S3 allows (5 MiB), so multipart uploads, their
parts and their aborts are exercised with bodies of a few MiB.
"""

from __future__ import annotations

import asyncio
import random
import sys
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp
import pytest

from gateway.revocation.entries import for_url
from gateway.storage import MIN_PART_SIZE
from tests.integration.harness import (
    Keys,
    RunningGateway,
    gateway_settings,
    make_keys,
    running_gateway,
    use_credentials,
)
from tests.polling import eventually
from tests.servers import S3Server

pytestmark = pytest.mark.integration

BUCKET = "private"
PART = MIN_PART_SIZE
MIB = 1024 * 1024


def payload(size: int, seed: int = 0) -> bytes:
    return random.Random(seed).randbytes(size)


async def pieces(data: bytes, size: int = 256 * 1024) -> AsyncIterator[bytes]:
    """An async generator body: aiohttp sends it chunked, without a Content-Length."""
    for start in range(0, len(data), size):
        yield data[start : start + size]


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> Keys:
    return make_keys(tmp_path_factory.mktemp("keys"))


@pytest.fixture
def aws_env(s3_server: S3Server, monkeypatch: pytest.MonkeyPatch) -> None:
    use_credentials(monkeypatch, s3_server)


@pytest.fixture
async def gw(s3_server: S3Server, keys: Keys, aws_env: None) -> AsyncIterator[RunningGateway]:
    settings = gateway_settings(
        "s3://private/up",
        keys.gateway_file,
        s3_endpoint_url=s3_server.endpoint_url,
        upload_part_size=str(PART),
        max_upload_bytes=str(64 * MIB),
    )
    async with running_gateway(settings) as running:
        yield running


@pytest.fixture
def folder() -> str:
    """A fresh path for each test, so tests never see each other's objects."""
    return f"/t-{uuid.uuid4().hex[:12]}"


class Bucket:
    """The test's view of the bucket, through a separate S3 client (in a thread, so the
    in-process gateway keeps running meanwhile)."""

    def __init__(self, server: S3Server) -> None:
        self.client = server.client()

    async def _call(self, function: Callable[..., Any], **kwargs: Any) -> Any:
        return await asyncio.to_thread(function, Bucket=BUCKET, **kwargs)

    async def objects(self, folder: str) -> dict[str, int]:
        reply = await self._call(self.client.list_objects_v2, Prefix=f"up{folder}/")
        return {item["Key"]: item["Size"] for item in reply.get("Contents", [])}

    async def pending_uploads(self, folder: str) -> list[str]:
        reply = await self._call(self.client.list_multipart_uploads)
        return [u["Key"] for u in reply.get("Uploads", []) if u["Key"].startswith(f"up{folder}/")]

    async def head(self, path: str) -> dict[str, Any]:
        result: dict[str, Any] = await self._call(self.client.head_object, Key=f"up{path}")
        return result

    async def put(self, path: str, body: bytes) -> None:
        await self._call(self.client.put_object, Key=f"up{path}", Body=body)


@pytest.fixture
def bucket(s3_server: S3Server) -> Bucket:
    return Bucket(s3_server)


async def put(
    gw: RunningGateway,
    target: str,
    data: bytes | AsyncIterator[bytes],
    headers: dict[str, str] | None = None,
    *,
    expect100: bool = False,
) -> tuple[int, dict[str, Any] | bytes, aiohttp.ClientResponse]:
    async with gw.session.put(
        gw.url(target), data=data, headers=headers, expect100=expect100
    ) as response:
        body = await response.read()
        if response.content_type == "application/json":
            return response.status, await response.json(), response
        return response.status, body, response


def error_of(reply: dict[str, Any] | bytes) -> object:
    """The `error` of a JSON refusal; None for a body that is not one."""
    return reply.get("error") if isinstance(reply, dict) else None


async def download(gw: RunningGateway, keys: Keys, path: str) -> bytes:
    response, body = await gw.request("GET", keys.sign(path))
    assert response.status == 200
    return body


async def raw_exchange(gw: RunningGateway, head: str, body: bytes = b"") -> bytes:
    """Send a hand-written request head (and body); return the first response bytes."""
    reader, writer = await asyncio.open_connection("127.0.0.1", gw.server.port)
    try:
        writer.write(head.encode("latin-1") + b"\r\n" + body)
        await writer.drain()
        return await reader.readuntil(b"\r\n\r\n")
    finally:
        writer.close()


# --- uploads that succeed -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("size", "chunked"),
    [
        (0, False),
        (1000, False),
        (PART, False),
        (3 * PART + 7, False),
        (1000, True),
        (12 * MIB, True),
    ],
    ids=["empty", "small", "one-part", "multipart", "small-chunked", "multipart-chunked"],
)
async def test_an_upload_is_stored_and_downloads_identical(
    gw: RunningGateway, keys: Keys, bucket: Bucket, folder: str, size: int, chunked: bool
) -> None:
    data = payload(size, seed=size)
    path = f"{folder}/file.bin"

    status, reply, response = await put(
        gw, keys.sign(path, method="PUT"), pieces(data) if chunked else data
    )

    assert status == 201
    stored = await bucket.head(path)
    assert response.headers["ETag"] == stored["ETag"]
    assert reply == {"path": path, "size": size, "etag": stored["ETag"]}
    assert await download(gw, keys, path) == data
    assert await bucket.pending_uploads(folder) == []


async def test_the_object_keeps_the_content_type_sent(
    gw: RunningGateway, keys: Keys, bucket: Bucket, folder: str
) -> None:
    path = f"{folder}/photo.png"
    target = keys.sign(path, method="PUT", content_type="image/")

    status, _, _ = await put(gw, target, b"\x89PNG...", {"Content-Type": "image/png"})

    assert status == 201
    assert (await bucket.head(path))["ContentType"] == "image/png"


async def test_a_prefix_link_lets_the_client_name_the_object_under_it(
    gw: RunningGateway, keys: Keys, folder: str
) -> None:
    query = keys.sign(f"{folder}/user-42/any", method="PUT", prefix=f"{folder}/user-42/")
    query = query.partition("?")[2]

    inside, _, _ = await put(gw, f"{folder}/user-42/chosen/name.txt?{query}", b"mine")
    outside, reply, _ = await put(gw, f"{folder}/user-43/name.txt?{query}", b"theirs")

    assert inside == 201
    assert (outside, reply) == (403, {"error": "outside_prefix"})
    assert await download(gw, keys, f"{folder}/user-42/chosen/name.txt") == b"mine"


async def test_concurrent_uploads_to_distinct_keys_each_store_their_own_bytes(
    gw: RunningGateway, keys: Keys, bucket: Bucket, folder: str
) -> None:
    bodies = {f"{folder}/{i}.bin": payload(PART + 1000 * i, seed=i) for i in range(6)}

    results = await asyncio.gather(
        *(put(gw, keys.sign(path, method="PUT"), pieces(data)) for path, data in bodies.items())
    )

    assert [status for status, _, _ in results] == [201] * len(bodies)
    for path, data in bodies.items():
        assert await download(gw, keys, path) == data
    assert await bucket.pending_uploads(folder) == []


async def test_uploads_are_counted_in_the_metrics(
    gw: RunningGateway, keys: Keys, folder: str
) -> None:
    await put(gw, keys.sign(f"{folder}/a.bin", method="PUT"), b"x" * 1234)

    assert gw.metric("gateway_received_bytes_total") == 1234
    assert gw.metric("gateway_requests_total", method="PUT", status="201", reason="ok") == 1
    assert gw.metric("gateway_uploads_in_flight") == 0


# --- refused before the body ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "headers", "status", "code"),
    [
        ({"content_type": "image/"}, {"Content-Type": "text/html"}, 415, "unsupported_media_type"),
        ({"content_type": "image/png"}, {}, 415, "unsupported_media_type"),
        ({}, {"Content-Encoding": "gzip"}, 415, "unsupported_content_encoding"),
        ({"max_bytes": 10}, {}, 413, "too_large"),
        ({"min_bytes": 5000}, {}, 400, "too_small"),
    ],
    ids=["wrong-type", "no-type", "encoded", "over-max", "under-min"],
)
async def test_an_upload_breaking_a_signed_limit_is_refused_and_nothing_is_stored(
    gw: RunningGateway,
    keys: Keys,
    bucket: Bucket,
    folder: str,
    options: dict[str, Any],
    headers: dict[str, str],
    status: int,
    code: str,
) -> None:
    target = keys.sign(f"{folder}/f.bin", method="PUT", **options)

    answer, reply, _ = await put(gw, target, b"x" * 1000, headers)

    assert (answer, reply) == (status, {"error": code})
    assert await bucket.objects(folder) == {}


async def test_a_body_above_the_gateways_bound_is_413_even_if_the_link_allows_it(
    gw: RunningGateway, keys: Keys, folder: str
) -> None:
    target = keys.sign(f"{folder}/f.bin", method="PUT", max_bytes=10**12)
    head = f"PUT {target} HTTP/1.1\r\nHost: t\r\nContent-Length: {64 * MIB + 1}\r\n"

    assert (await raw_exchange(gw, head)).startswith(b"HTTP/1.1 413 ")


async def test_a_body_without_length_or_chunking_is_411(
    gw: RunningGateway, keys: Keys, folder: str
) -> None:
    target = keys.sign(f"{folder}/f.bin", method="PUT")

    assert (await raw_exchange(gw, f"PUT {target} HTTP/1.1\r\nHost: t\r\n")).startswith(
        b"HTTP/1.1 411 "
    )


@pytest.mark.parametrize(
    ("options", "expected"),
    [({"max_bytes": 10}, b"HTTP/1.1 413 "), ({}, b"HTTP/1.1 100 Continue\r\n\r\n")],
    ids=["refused", "accepted"],
)
async def test_100_continue_is_sent_only_once_the_upload_is_accepted(
    gw: RunningGateway, keys: Keys, folder: str, options: dict[str, Any], expected: bytes
) -> None:
    target = keys.sign(f"{folder}/f.bin", method="PUT", **options)
    head = f"PUT {target} HTTP/1.1\r\nHost: t\r\nContent-Length: 100\r\nExpect: 100-continue\r\n"

    first = await raw_exchange(gw, head)

    assert first.startswith(expected)


async def test_an_unknown_expectation_is_417(gw: RunningGateway, keys: Keys, folder: str) -> None:
    target = keys.sign(f"{folder}/f.bin", method="PUT")
    head = f"PUT {target} HTTP/1.1\r\nHost: t\r\nContent-Length: 100\r\nExpect: teapot\r\n"

    assert (await raw_exchange(gw, head)).startswith(b"HTTP/1.1 417 ")


async def test_a_refused_client_that_sent_no_body_is_told_the_connection_closes(
    gw: RunningGateway, keys: Keys, folder: str
) -> None:
    target = keys.sign(f"{folder}/f.bin", method="PUT", max_bytes=10)
    head = f"PUT {target} HTTP/1.1\r\nHost: t\r\nContent-Length: 100\r\nExpect: 100-continue\r\n"

    assert b"\r\nConnection: close\r\n" in await raw_exchange(gw, head)


# --- refused while streaming: nothing half-written ------------------------------------------


async def test_a_chunked_body_passing_the_limit_is_413_and_leaves_no_parts(
    gw: RunningGateway, keys: Keys, bucket: Bucket, folder: str
) -> None:
    target = keys.sign(f"{folder}/big.bin", method="PUT", max_bytes=2 * PART + 1)

    status, reply, _ = await put(gw, target, pieces(payload(3 * PART)))

    assert (status, reply) == (413, {"error": "too_large"})
    assert await bucket.objects(folder) == {}
    assert await bucket.pending_uploads(folder) == []


async def test_a_chunked_body_short_of_the_minimum_is_400_and_leaves_nothing(
    gw: RunningGateway, keys: Keys, bucket: Bucket, folder: str
) -> None:
    target = keys.sign(f"{folder}/small.bin", method="PUT", min_bytes=2 * PART)

    status, reply, _ = await put(gw, target, pieces(payload(PART + 1)))

    assert (status, reply) == (400, {"error": "too_small"})
    assert await bucket.objects(folder) == {}
    assert await bucket.pending_uploads(folder) == []


CLIENT = """
import socket, sys
port, target, total = int(sys.argv[1]), sys.argv[2], int(sys.argv[3])
conn = socket.create_connection(("127.0.0.1", port))
head = f"PUT {target} HTTP/1.1\\r\\nHost: t\\r\\nContent-Length: {total}\\r\\n\\r\\n"
conn.sendall(head.encode())
block = bytes(65536)
for _ in range(total // 2 // len(block)):
    conn.sendall(block)
print("half sent", flush=True)
sys.stdin.read()  # wait to be killed
"""


async def test_a_client_killed_mid_upload_leaves_no_object_and_no_parts(
    gw: RunningGateway, keys: Keys, bucket: Bucket, folder: str
) -> None:
    target = keys.sign(f"{folder}/killed.bin", method="PUT")
    client = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        CLIENT,
        str(gw.server.port),
        target,
        str(6 * PART),
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
    )
    try:
        assert client.stdout is not None
        assert await client.stdout.readline() == b"half sent\n"
        for _ in range(500):  # the parts received so far are in storage, not yet an object
            if await bucket.pending_uploads(folder):
                break
            await asyncio.sleep(0.01)
        assert await bucket.pending_uploads(folder) == [f"up{folder}/killed.bin"]
    finally:
        client.kill()
        await client.wait()

    await eventually(lambda: gw.metric("gateway_uploads_in_flight") == 0)
    assert await bucket.pending_uploads(folder) == []
    assert await bucket.objects(folder) == {}
    assert (
        gw.metric(
            "gateway_requests_total", method="PUT", status="400", reason="client_disconnected"
        )
        == 1
    )


async def test_storage_refusing_the_upload_is_502(
    s3_server: S3Server, keys: Keys, aws_env: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "wrong-secret")
    settings = gateway_settings(
        "s3://private/up", keys.gateway_file, s3_endpoint_url=s3_server.endpoint_url
    )
    async with running_gateway(settings) as gw:
        status, reply, _ = await put(gw, keys.sign("/f.bin", method="PUT"), b"x" * 100)

        assert (status, reply) == (502, {"error": "origin_error"})
        assert gw.metric("gateway_uploads_in_flight") == 0


# --- NoOverwrite ------------------------------------------------------------------------------


async def test_no_overwrite_refuses_an_existing_key_with_412_before_the_body(
    gw: RunningGateway, keys: Keys, bucket: Bucket, folder: str
) -> None:
    await bucket.put(f"{folder}/taken.txt", b"original")
    target = keys.sign(f"{folder}/taken.txt", method="PUT", no_overwrite=True)

    status, reply, _ = await put(gw, target, b"replacement")

    assert (status, reply) == (412, {"error": "object_exists"})
    assert await download(gw, keys, f"{folder}/taken.txt") == b"original"


async def test_no_overwrite_stores_a_new_key(gw: RunningGateway, keys: Keys, folder: str) -> None:
    target = keys.sign(f"{folder}/new.txt", method="PUT", no_overwrite=True)

    status, _, _ = await put(gw, target, b"first")

    assert status == 201


@pytest.mark.parametrize("size", [1000, 2 * PART], ids=["put-object", "multipart"])
async def test_of_racing_no_overwrite_uploads_exactly_one_wins(
    gw: RunningGateway, keys: Keys, bucket: Bucket, folder: str, size: int
) -> None:
    path = f"{folder}/race.bin"
    bodies = [payload(size, seed=i) for i in range(4)]

    results = await asyncio.gather(
        *(put(gw, keys.sign(path, method="PUT", no_overwrite=True), body) for body in bodies)
    )

    winners = [reply for status, reply, _ in results if status == 201]
    losers = {(status, error_of(reply)) for status, reply, _ in results if status != 201}
    assert len(winners) == 1
    assert losers <= {(409, "upload_in_progress"), (412, "object_exists")}
    assert await download(gw, keys, path) in bodies
    assert await bucket.pending_uploads(folder) == []


@pytest.mark.parametrize("size", [1000, 2 * PART], ids=["put-object", "multipart"])
async def test_storage_refuses_a_no_overwrite_upload_whose_key_appeared_meanwhile(
    s3_server: S3Server, bucket: Bucket, folder: str, size: int, aws_env: None
) -> None:
    """The existence check passed, then another writer (not a gateway) created the key:
    storage's conditional write (If-None-Match: *) refuses, and nothing is left over."""
    from gateway.storage import AlreadyExists
    from gateway.storage.s3 import S3Store

    store = S3Store(
        bucket=BUCKET,
        region="us-east-1",
        endpoint_url=s3_server.endpoint_url,
        connect_timeout=5,
        first_byte_timeout=30,
        idle_timeout=30,
        chunk_size=65536,
        pool_size=4,
        upload_part_size=PART,
    )
    await store.start()
    try:
        sink = await store.begin_upload(
            f"up{folder}/late.bin", content_type="a/b", no_overwrite=True
        )
        await sink.write(payload(size))
        await bucket.put(f"{folder}/late.bin", b"the other writer")

        with pytest.raises(AlreadyExists):
            await sink.complete()
        await sink.abort()
    finally:
        await store.close()

    assert await bucket.objects(folder) == {f"up{folder}/late.bin": len(b"the other writer")}
    assert await bucket.pending_uploads(folder) == []


# --- OneTime --------------------------------------------------------------------------------


async def test_a_one_time_link_works_once_then_is_revoked(
    gw: RunningGateway, keys: Keys, folder: str
) -> None:
    target = keys.sign(f"{folder}/once.txt", method="PUT", one_time=True)

    first, _, _ = await put(gw, target, b"first")
    replay, reply, _ = await put(gw, target, b"second")

    assert first == 201
    assert (replay, reply) == (403, {"error": "revoked"})
    assert await download(gw, keys, f"{folder}/once.txt") == b"first"


async def test_a_failed_one_time_upload_can_be_retried(
    gw: RunningGateway, keys: Keys, folder: str
) -> None:
    target = keys.sign(f"{folder}/retry.txt", method="PUT", one_time=True, min_bytes=10)

    failed, _, _ = await put(gw, target, pieces(b"short"))
    retried, _, _ = await put(gw, target, b"long enough")

    assert (failed, retried) == (400, 201)


async def test_a_one_time_link_used_concurrently_on_two_gateways_succeeds_once(
    s3_server: S3Server, gw: RunningGateway, keys: Keys, folder: str, aws_env: None
) -> None:
    """Six clients present the link at once, three to each gateway (they share a revocation
    store: the same SQLite file). Each sends its headers with `Expect: 100-continue`: exactly
    one is invited to send its body, the others are refused before theirs."""
    settings = gateway_settings(
        "s3://private/up", keys.gateway_file, s3_endpoint_url=s3_server.endpoint_url
    )
    target = keys.sign(f"{folder}/contended.bin", method="PUT", one_time=True)
    head = f"PUT {target} HTTP/1.1\r\nHost: t\r\nContent-Length: 4\r\nExpect: 100-continue\r\n"

    async with running_gateway(settings) as other:
        gateways = [gw, other] * 3
        connections = [await asyncio.open_connection("127.0.0.1", g.server.port) for g in gateways]
        for _, writer in connections:
            writer.write(head.encode() + b"\r\n")
        firsts = await asyncio.gather(*(reader.readuntil(b"\r\n\r\n") for reader, _ in connections))
        invited = [i for i, first in enumerate(firsts) if first.startswith(b"HTTP/1.1 100 ")]
        refused = [
            first.split(b"\r\n")[0] for first in firsts if not first.startswith(b"HTTP/1.1 100 ")
        ]

        assert len(invited) == 1
        assert refused == [b"HTTP/1.1 409 Conflict"] * (len(gateways) - 1)
        reader, writer = connections[invited[0]]
        writer.write(b"body")
        assert (await reader.readuntil(b"\r\n")).startswith(b"HTTP/1.1 201 ")
        for _, writer in connections:
            writer.close()

        # A replay is refused everywhere, as revoked once each view has the revocation
        # (until then the other gateway refuses it as in use: the claim never lapses).
        token = for_url(target, skew=0).value
        await eventually(
            lambda: all(
                any(e.value == token for e in g.services.revocations.entries()) for g in (gw, other)
            )
        )
        for g in (gw, other):
            status, reply, _ = await put(g, target, b"again")
            assert (status, reply) == (403, {"error": "revoked"})
