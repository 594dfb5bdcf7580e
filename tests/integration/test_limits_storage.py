"""A refused limited request never reaches storage: a forwarder between the gateway and a real
S3 server (SeaweedFS) counts the requests the gateway sends it. A plain GET of a link without
MaxServed is judged before storage is asked; MaxServed needs the body's length, which only
storage gives, so such a link is judged once storage has answered (docs/gateway.md)."""

from __future__ import annotations

from collections.abc import AsyncIterator
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

BODY = bytes(range(256)) * 16
KEY = "limited/film.mp4"
STORED = "/private/limited/film.mp4"  # the path storage sees


@dataclass
class Counted:
    gw: RunningGateway
    storage: CountingForwarder
    keys: Keys

    async def fetch(self, link: str, client: str) -> int:
        response, _ = await self.gw.request("GET", link, {"X-Forwarded-For": client})
        return response.status

    @property
    def gets(self) -> int:
        return len(self.storage.requests_for(STORED))


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory, s3_server: S3Server) -> Keys:
    s3_server.client().put_object(Bucket="private", Key=KEY, Body=BODY)
    return make_keys(tmp_path_factory.mktemp("keys"))


@pytest.fixture
async def counted(
    s3_server: S3Server, keys: Keys, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[Counted]:
    use_credentials(monkeypatch, s3_server)
    port = urlsplit(s3_server.endpoint_url).port
    assert port is not None
    async with counting_forwarder(port) as storage:
        settings = gateway_settings(
            "s3://private/limited",
            keys.gateway_file,
            s3_endpoint_url=storage.url,
            trusted_proxies="127.0.0.1/32",
        )
        async with running_gateway(settings) as gw:
            yield Counted(gw, storage, keys)


@pytest.mark.parametrize(
    ("limit", "refused"),
    [({"max_streams": 1}, 429), ({"max_uses": 1}, 403), ({"max_uses": 1, "rate": 10**9}, 403)],
)
async def test_a_refused_request_makes_no_storage_request(
    counted: Counted, limit: dict[str, int], refused: int
) -> None:
    link = counted.keys.sign("/film.mp4", **limit)
    assert await counted.fetch(link, "198.51.100.7") == 200
    assert counted.gets == 1
    assert await counted.fetch(link, "203.0.113.9") == refused
    assert counted.gets == 1


async def test_a_max_served_link_is_judged_once_storage_gave_the_length(counted: Counted) -> None:
    link = counted.keys.sign("/film.mp4", max_served=len(BODY))
    assert await counted.fetch(link, "198.51.100.7") == 200
    assert await counted.fetch(link, "198.51.100.7") == 403
    assert counted.gets == 2
