"""Range positions past the end of any object are judged by the gateway, the same in front of S3
as in front of a directory: storage parses positions as 64-bit integers and would answer 416
where the right answer is the object's end, and a first position past the end is a 416 that
names the size."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.integration.conftest import PRIVATE_BUCKET
from tests.integration.harness import (
    Keys,
    RunningGateway,
    gateway_settings,
    make_keys,
    running_gateway,
    s3_gateway_settings,
)
from tests.servers import S3Server

pytestmark = pytest.mark.integration

BODY = bytes(range(256)) * 4  # 1000 bytes would do; 1024 keeps slices out of it
KEY = "huge-ranges/object.bin"


@pytest.fixture(params=["s3", "file", "s3-cache-cold", "s3-cache-warm"])
async def gw(
    request: pytest.FixtureRequest,
    tmp_path: Path,
    s3_server: S3Server,
    monkeypatch: pytest.MonkeyPatch,
) -> AsyncIterator[tuple[RunningGateway, Keys]]:
    """The same answers from S3 and from a directory, and with the cache on, empty or holding
    the object."""
    keys = make_keys(tmp_path)
    store, _, cache = request.param.partition("-cache-")
    extra = {"cache": "true", "cache_dir": str(tmp_path / "cache")} if cache else {}
    if store == "s3":
        s3_server.client().put_object(Bucket=PRIVATE_BUCKET, Key=KEY, Body=BODY)
        settings = s3_gateway_settings(
            monkeypatch, s3_server, f"s3://{PRIVATE_BUCKET}/", keys.gateway_file, **extra
        )
    else:
        (tmp_path / "objects" / "huge-ranges").mkdir(parents=True)
        (tmp_path / "objects" / KEY).write_bytes(BODY)
        settings = gateway_settings(f"file://{tmp_path / 'objects'}", keys.gateway_file)
    async with running_gateway(settings) as gateway:
        if cache == "warm":
            response, body = await gateway.request("GET", keys.sign("/" + KEY))
            assert (response.status, body) == (200, BODY)
        yield gateway, keys
        if cache:  # the answers the test judged were the cache's
            states = ("hit", "miss") if cache == "warm" else ("miss",)
            asked = [gateway.metric("gateway_cache_requests_total", state=s) for s in states]
            assert all(asked), dict(zip(states, asked, strict=True))


@pytest.mark.parametrize(
    "header",
    [
        "bytes=0-9223372036854775808",  # 2**63: one past int64
        "bytes=0-9999999999999999999",
        "bytes=0-99999999999999999999",  # 20 digits
        "bytes=-9223372036854775808",
    ],
)
async def test_an_end_past_any_object_is_the_objects_end(
    gw: tuple[RunningGateway, Keys], header: str
) -> None:
    gateway, keys = gw

    response, body = await gateway.request("GET", keys.sign(f"/{KEY}"), {"Range": header})

    assert response.status == 206
    assert response.headers["Content-Range"] == f"bytes 0-{len(BODY) - 1}/{len(BODY)}"
    assert body == BODY


@pytest.mark.parametrize(
    "header", ["bytes=9223372036854775808-", "bytes=99999999999999999999-", "bytes=1024-"]
)
async def test_a_start_past_the_end_is_416_with_the_size(
    gw: tuple[RunningGateway, Keys], header: str
) -> None:
    gateway, keys = gw

    response, _ = await gateway.request("GET", keys.sign(f"/{KEY}"), {"Range": header})

    assert response.status == 416
    assert response.headers["Content-Range"] == f"bytes */{len(BODY)}"
