"""Cookie tossing: a sibling site (or a script) can add `EdgeToken` cookies to a victim's
requests. Whatever it adds, the victim's own good cookie still gets the object."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from gateway.token_source import COOKIE_NAME, MAX_COOKIES
from signer import Algorithm, Keyring, Status, new_key, sign_path
from signer.format import encode_payload
from tests.integration.harness import Keys, RunningGateway, gateway_settings, make_keys
from tests.integration.harness import running_gateway as start_gateway

pytestmark = pytest.mark.integration

SEGMENT = "/hls/ep1/720p/seg001.ts"
FORGER = Keyring([new_key("live", Algorithm.ED25519, Status.ACTIVE)])  # the gateway's key id


def payload(keyring: Keyring, prefix: str = "/hls/ep1/", *, expired: bool = False) -> str:
    """An `EdgeToken` value: the query of a prefix token, as the gateway's Set-Cookie gives."""
    now = time.time() - (600 if expired else 0)
    target = sign_path(prefix + "master.m3u8", keyring, prefix=prefix, expires_in=300, now=now)
    return encode_payload(target.partition("?")[2])


@pytest.fixture
async def gw(tmp_path: Path) -> AsyncIterator[tuple[RunningGateway, Keys]]:
    objects = tmp_path / "objects"
    (objects / "hls/ep1/720p").mkdir(parents=True)
    (objects / SEGMENT.lstrip("/")).write_bytes(b"segment")
    keys = make_keys(tmp_path)
    async with start_gateway(gateway_settings(f"file://{objects}", keys.gateway_file)) as running:
        yield running, keys


async def answer(gw: RunningGateway, *payloads: str) -> tuple[int, bytes]:
    cookies = "; ".join(f"{COOKIE_NAME}={p}" for p in payloads)
    response, body = await gw.request("GET", SEGMENT, {"Cookie": cookies})
    return response.status, body


@pytest.mark.parametrize("junk", ["x", "w6k", encode_payload("w=640"), ""])
async def test_junk_cookies_sent_first_do_not_hide_the_good_one(
    gw: tuple[RunningGateway, Keys], junk: str
) -> None:
    running, keys = gw
    good = payload(keys.signing)
    assert await answer(running, *[junk] * MAX_COOKIES, good) == (200, b"segment")
    assert await answer(running, *[junk] * 50, good) == (200, b"segment")


@pytest.mark.parametrize("claimed", ["/hls/ep1/", "/"])
async def test_a_forged_cookie_claiming_the_path_sent_first_does_not_hide_the_good_one(
    gw: tuple[RunningGateway, Keys], claimed: str
) -> None:
    running, keys = gw
    forged = payload(FORGER, claimed)
    assert await answer(running, forged, payload(keys.signing)) == (200, b"segment")


async def test_with_no_good_cookie_an_authentic_ones_reason_is_given(
    gw: tuple[RunningGateway, Keys],
) -> None:
    running, keys = gw
    expired = payload(keys.signing, expired=True)
    status, body = await answer(running, payload(FORGER), expired)
    assert (status, body) == (403, b'{"error":"expired"}\n')
