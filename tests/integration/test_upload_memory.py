"""A large upload through `gateway serve` (a separate process, as operators run it): the body is
streamed into storage part by part, so the gateway's memory stays flat whatever the size."""

from __future__ import annotations

import hashlib
import random
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import aiohttp
import pytest

from tests.integration.harness import use_credentials
from tests.integration.test_process import Served, serve
from tests.servers import S3Server

pytestmark = pytest.mark.integration

MIB = 1024 * 1024
SIZE = 200 * MIB
PART = 8 * MIB  # the default upload_part_size


def high_water_mark(pid: int) -> int:
    """Peak resident set size of a process so far (VmHWM), in bytes."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmHWM in /proc (not Linux?)")


@pytest.fixture
def served(
    tmp_path: Path, s3_server: S3Server, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Served]:
    use_credentials(monkeypatch, s3_server)
    gateway = serve(
        tmp_path,
        "s3://private/memory",
        s3_endpoint_url=s3_server.endpoint_url,
        access_log="false",
    )
    yield gateway
    gateway.process.kill()
    gateway.process.wait()


async def body(size: int, digest: hashlib._Hash) -> AsyncIterator[bytes]:
    """`size` bytes from a generator (sent chunked): never held whole by the client either."""
    block = random.Random(7).randbytes(MIB)
    for index in range(size // MIB):
        chunk = block[index % 251 :] + block[: index % 251]  # no two consecutive MiB alike
        digest.update(chunk)
        yield chunk


async def upload(session: aiohttp.ClientSession, served: Served, path: str, size: int) -> str:
    sent = hashlib.sha256()
    url = served.url(path, method="PUT")
    async with session.put(url, data=body(size, sent)) as response:
        assert response.status == 201, await response.text()
    return sent.hexdigest()


async def test_a_200_mib_upload_keeps_the_gateway_rss_flat(
    served: Served, capsys: pytest.CaptureFixture[str]
) -> None:
    pid = served.process.pid
    async with aiohttp.ClientSession() as session:
        await upload(session, served, "/warm-up.bin", 3 * PART)  # every code path loaded once
        before = high_water_mark(pid)

        sent = await upload(session, served, "/large.bin", SIZE)

        peak = high_water_mark(pid)
        received = hashlib.sha256()
        async with session.get(served.url("/large.bin")) as response:
            assert response.status == 200
            async for chunk in response.content.iter_chunked(MIB):
                received.update(chunk)
    with capsys.disabled():
        print(
            f"\n  200 MiB upload: gateway VmHWM {before / MIB:.1f} MiB before, "
            f"{peak / MIB:.1f} MiB after (+{(peak - before) / MIB:.1f} MiB)"
        )
    assert peak - before < 4 * PART
    assert received.hexdigest() == sent
