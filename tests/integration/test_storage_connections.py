"""What the GET path costs storage, counted on the wire: a forwarder between the gateway and a
real S3 server (SeaweedFS) counts the connections the gateway opens and the bytes storage sends.

A revalidation (304), a failed precondition (412) or a HEAD is answered from the object's
metadata, so it keeps its storage connection for the next request, like full GETs do, and moves
none of the object's bytes (issue 14 §4).
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from urllib.parse import urlsplit

import pytest

from tests.forwarder import CountingForwarder, counting_forwarder
from tests.integration.harness import (
    Keys,
    RunningGateway,
    gateway_settings,
    make_keys,
    running_gateway,
    use_credentials,
)
from tests.servers import S3Server

pytestmark = pytest.mark.integration

OBJECT = os.urandom(1024 * 1024)
KEY = "counted/one-mib.bin"
REQUESTS = 5
#: Storage's answers without a body (status line and headers) stay far below this, for all five
#: requests together; a single body is sixteen times more.
HEADS_ONLY = len(OBJECT) // 16


@dataclass
class Counted:
    gw: RunningGateway
    storage: CountingForwarder
    keys: Keys
    etag: str


@pytest.fixture(scope="module")
def etag(s3_server: S3Server) -> str:
    client = s3_server.client()
    client.put_object(Bucket="private", Key=KEY, Body=OBJECT)
    value: str = client.head_object(Bucket="private", Key=KEY)["ETag"]
    return value


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> Keys:
    return make_keys(tmp_path_factory.mktemp("keys"))


@pytest.fixture
async def counted(
    s3_server: S3Server, keys: Keys, etag: str, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[Counted]:
    use_credentials(monkeypatch, s3_server)
    port = urlsplit(s3_server.endpoint_url).port
    assert port is not None
    async with counting_forwarder(port) as storage:
        settings = gateway_settings(
            "s3://private/counted", keys.gateway_file, s3_endpoint_url=storage.url
        )
        async with running_gateway(settings) as gw:
            yield Counted(gw, storage, keys, etag)


@dataclass(frozen=True)
class Kind:
    method: str
    headers: Callable[[str], dict[str, str]]  # from the object's ETag
    status: int
    reason: str
    body: bytes = b""


KINDS = {
    "full-get": Kind("GET", lambda _: {}, 200, "ok", OBJECT),
    "revalidation": Kind("GET", lambda etag: {"If-None-Match": etag}, 304, "not_modified"),
    "failed-if-match": Kind(
        "GET",
        lambda _: {"If-Match": '"other"'},
        412,
        "precondition_failed",
        b'{"error":"precondition_failed"}\n',
    ),
    "head": Kind("HEAD", lambda _: {}, 200, "ok"),
    "head-revalidation": Kind("HEAD", lambda etag: {"If-None-Match": etag}, 304, "not_modified"),
}


async def repeat(counted: Counted, kind: Kind) -> None:
    """The same request, five times in a row, each answered as `kind` says."""
    for _ in range(REQUESTS):
        target = counted.keys.sign("/one-mib.bin")
        response, body = await counted.gw.request(kind.method, target, kind.headers(counted.etag))
        assert (response.status, body) == (kind.status, kind.body)
    requests = counted.gw.metric(
        "gateway_requests_total", method=kind.method, status=str(kind.status), reason=kind.reason
    )
    assert requests == REQUESTS


@pytest.mark.parametrize("name", list(KINDS))
async def test_repeated_requests_reuse_one_storage_connection(counted: Counted, name: str) -> None:
    await repeat(counted, KINDS[name])
    assert counted.storage.accepted == 1


@pytest.mark.parametrize("name", [name for name in KINDS if name != "full-get"])
async def test_an_answer_without_a_body_moves_no_object_bytes_from_storage(
    counted: Counted, name: str
) -> None:
    await repeat(counted, KINDS[name])
    assert 0 < counted.storage.from_target < HEADS_ONLY


async def test_the_forwarder_counts_every_body_storage_sends(counted: Counted) -> None:
    """The bound above means something: full GETs are seen with all their bytes."""
    await repeat(counted, KINDS["full-get"])
    assert counted.storage.from_target >= REQUESTS * len(OBJECT)
