"""SIGTERM: requests in flight, uploads included, get `shutdown_grace` to finish; then what still
runs is cut, recorded as `shutdown`, and the process exits within EXIT_MARGIN."""

from __future__ import annotations

import asyncio
import random
import signal
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import aiohttp
import pytest

from gateway.server import EXIT_MARGIN, WORKER_EXIT_WAIT, drain
from gateway.storage import MIN_PART_SIZE
from signer import sign_path
from tests.integration.harness import (
    Keys,
    RunningGateway,
    gateway_settings,
    make_keys,
    running_gateway,
    use_credentials,
)
from tests.integration.test_process import BIG, Served, serve
from tests.polling import eventually, eventually_async
from tests.servers import S3Server

pytestmark = pytest.mark.integration

PART = MIN_PART_SIZE


def payload(size: int) -> bytes:
    return random.Random(size).randbytes(size)


def put_head(target: str, length: int) -> bytes:
    return f"PUT {target} HTTP/1.1\r\nHost: t\r\nContent-Length: {length}\r\n\r\n".encode()


async def pending_uploads(s3_server: S3Server, prefix: str) -> list[str]:
    reply = await asyncio.to_thread(
        s3_server.client().list_multipart_uploads, Bucket="private", Prefix=prefix
    )
    return [upload["Key"] for upload in reply.get("Uploads", [])]


async def receiving(s3_server: S3Server, key: str) -> bool:
    """Whether a multipart upload of `key` is under way (its first part is in storage)."""
    return key in await pending_uploads(s3_server, key)


async def stored(s3_server: S3Server, key: str) -> bytes:
    reply = await asyncio.to_thread(s3_server.client().get_object, Bucket="private", Key=key)
    body: bytes = await asyncio.to_thread(reply["Body"].read)
    return body


@pytest.fixture
def objects(tmp_path: Path) -> Path:
    root = tmp_path / "objects"
    root.mkdir()
    with (root / "big.bin").open("wb") as handle:
        handle.truncate(BIG)
    return root


@pytest.fixture
def s3_served(
    tmp_path: Path, s3_server: S3Server, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Served]:
    use_credentials(monkeypatch, s3_server)
    served = serve(
        tmp_path,
        "s3://private/shutdown",
        s3_endpoint_url=s3_server.endpoint_url,
        upload_part_size=str(PART),
    )
    yield served
    if served.process.poll() is None:
        served.process.kill()
        served.process.wait()


async def test_an_upload_in_progress_at_sigterm_finishes_with_201(
    s3_served: Served, s3_server: S3Server
) -> None:
    """The body keeps arriving after the signal (aiohttp's own shutdown would drop it), while
    new connections are already refused."""
    data = payload(3 * PART)
    path = f"/{uuid.uuid4().hex}/up.bin"
    target = sign_path(path, s3_served.keyring, expires_in=300, method="PUT")
    reader, writer = await asyncio.open_connection("127.0.0.1", s3_served.port)
    try:
        writer.write(put_head(target, len(data)) + data[: 2 * PART])
        await writer.drain()
        await eventually_async(lambda: receiving(s3_server, f"shutdown{path}"), within=30)

        s3_served.process.send_signal(signal.SIGTERM)
        await eventually(lambda: not s3_served.accepting())
        writer.write(data[2 * PART :])
        await writer.drain()
        head = await reader.readuntil(b"\r\n\r\n")
    finally:
        writer.close()

    assert head.startswith(b"HTTP/1.1 201 ")
    assert b"\r\nConnection: close\r\n" in head  # draining: the connection ends here
    assert await stored(s3_server, f"shutdown{path}") == data
    assert s3_served.process.wait(timeout=30) == 0


async def test_with_workers_a_stalled_stream_is_cut_at_the_grace_and_every_worker_exits_itself(
    tmp_path: Path, objects: Path
) -> None:
    """aiohttp's shutdown would wait the grace twice, past the supervisor's SIGKILL; cut at the
    grace, each worker exits by itself, and the supervisor within the grace plus EXIT_MARGIN:
    the budget the deploy files' stop timeouts are checked against (tests/deploy)."""
    grace = WORKER_EXIT_WAIT + 2  # twice this is well past the supervisor's SIGKILL
    served = serve(tmp_path, objects, workers="2", shutdown_grace=str(grace))
    try:
        async with (
            aiohttp.ClientSession() as session,
            session.get(served.url("/big.bin")) as response,
        ):
            await response.content.readexactly(1024 * 1024)  # then read no more: it stalls
            served.process.send_signal(signal.SIGTERM)

            assert served.process.wait(timeout=grace + EXIT_MARGIN) == 0
        errors = served.output().splitlines()
        assert sum(line.endswith("gateway: stopped") for line in errors) == 2, errors
        (line,) = [line for line in served.access_log() if line["path"] == "/big.bin"]
        assert (line["status"], line["reason"]) == (200, "shutdown")
        assert line["bytes"] < BIG
    finally:
        if served.process.poll() is None:
            served.process.kill()


# --- in-process: the drain itself, with the metrics --------------------------------------------


@pytest.fixture
async def local_gw(tmp_path: Path, objects: Path) -> AsyncIterator[tuple[RunningGateway, Keys]]:
    keys = make_keys(tmp_path)
    settings = gateway_settings(f"file://{objects}", keys.gateway_file)
    async with running_gateway(settings) as gw:
        yield gw, keys


async def test_a_stream_cut_by_the_deadline_is_recorded_as_shutdown(
    local_gw: tuple[RunningGateway, Keys],
) -> None:
    gw, keys = local_gw
    async with gw.session.get(gw.url(keys.sign("/big.bin"))) as response:
        await response.content.readexactly(1024 * 1024)  # then it stalls

        await drain(gw.server, gw.services.in_flight, grace=0)

    assert gw.metric("gateway_requests_total", method="GET", status="200", reason="shutdown") == 1
    assert gw.metric("gateway_streams_in_flight") == 0


async def test_an_upload_cut_by_the_deadline_is_recorded_as_shutdown_and_leaves_nothing(
    local_gw: tuple[RunningGateway, Keys], objects: Path
) -> None:
    gw, keys = local_gw
    target = keys.sign("/cut/up.bin", method="PUT")
    _, writer = await asyncio.open_connection("127.0.0.1", gw.server.port)
    try:
        writer.write(put_head(target, 2 * PART) + bytes(PART))
        await writer.drain()
        await eventually(lambda: gw.metric("gateway_uploads_in_flight") == 1)

        await drain(gw.server, gw.services.in_flight, grace=0)
    finally:
        writer.close()

    assert gw.metric("gateway_requests_total", method="PUT", status="503", reason="shutdown") == 1
    assert gw.metric("gateway_uploads_in_flight") == 0
    cut = objects / "cut"  # made by the upload, unless it was cut before it got that far
    assert not cut.exists() or list(cut.iterdir()) == []  # no object, no temporary file


async def test_draining_refuses_new_connections_and_readiness_says_so(
    local_gw: tuple[RunningGateway, Keys],
) -> None:
    gw, _ = local_gw

    await drain(gw.server, gw.services.in_flight, grace=0)

    assert await gw.admin_get("/readyz") == (503, "draining\n")
    with pytest.raises(ConnectionRefusedError):
        await asyncio.open_connection("127.0.0.1", gw.server.port)
