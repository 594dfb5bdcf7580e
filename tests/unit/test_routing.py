"""How the public app is routed: the requests its one route takes go straight to the pipeline
(`gateway.app._routed_directly`), with the app's response signals; the others get the answer
aiohttp's router gives them."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from gateway.app import CATCH_ALL
from gateway.connections import REQUEST_HANDLER
from tests.integration.harness import (
    Keys,
    RunningGateway,
    gateway_settings,
    make_keys,
    running_gateway,
)

ORIGIN = "https://player.example"


@pytest.fixture
async def gateway(tmp_path: Path) -> AsyncIterator[tuple[RunningGateway, Keys]]:
    root = tmp_path / "objects"
    (root / "docs").mkdir(parents=True)
    (root / "docs" / "a.txt").write_bytes(b"a document")
    (tmp_path / "keys").mkdir()
    keys = make_keys(tmp_path / "keys")
    settings = gateway_settings(f"file://{root}", keys.gateway_file, cors_origins=ORIGIN)
    async with running_gateway(settings) as gw:
        yield gw, keys


async def exchange(gw: RunningGateway, target: str, *headers: str) -> tuple[bytes, bytes]:
    """One raw GET of `target`; the answer's head and body."""
    reader, writer = await asyncio.open_connection("127.0.0.1", gw.server.port)
    try:
        lines = [f"GET {target} HTTP/1.1", "Host: gw", "Connection: close", *headers]
        writer.write(("\r\n".join(lines) + "\r\n\r\n").encode())
        head, _, body = (await reader.read()).partition(b"\r\n\r\n")
        return head, body
    finally:
        writer.close()


def test_the_public_app_is_served_by_its_direct_handler(
    gateway: tuple[RunningGateway, Keys],
) -> None:
    gw, _ = gateway
    assert REQUEST_HANDLER in gw.app
    assert not gw.app.middlewares  # which the direct handler would leave out
    (route,) = gw.app.router.routes()
    assert route.resource is not None
    assert route.resource.get_info()["formatter"] == CATCH_ALL.replace(":.*", "")


@pytest.mark.parametrize(
    ("path", "status", "reason"),
    [("/docs/a.txt", b"200 OK", "ok"), ("/nothing.txt", b"404 Not Found", "not_found")],
)
async def test_a_request_the_route_takes_is_answered_with_the_apps_response_signals(
    gateway: tuple[RunningGateway, Keys], path: str, status: bytes, reason: str
) -> None:
    gw, keys = gateway
    head, _ = await exchange(gw, keys.sign(path), f"Origin: {ORIGIN}")
    assert head.startswith(b"HTTP/1.1 " + status)
    assert b"\r\nServer: edge-gateway\r\n" in head
    assert f"\r\nAccess-Control-Allow-Origin: {ORIGIN}\r\n".encode() in head
    counted = {"method": "GET", "status": status[:3].decode(), "reason": reason}
    assert gw.metric("gateway_requests_total", **counted) == 1


@pytest.mark.parametrize("newline", ["%0A", "%0a"])
async def test_a_path_the_route_refuses_gets_the_routers_answer(
    gateway: tuple[RunningGateway, Keys], newline: str
) -> None:
    """An encoded newline: the route's pattern (`.*`) does not take it, so aiohttp's router
    answers 404 before the pipeline sees the request (which would say `missing_token`), as
    it does without the direct handler."""
    gw, _ = gateway
    head, body = await exchange(gw, f"/docs/a{newline}.txt")
    assert head.startswith(b"HTTP/1.1 404 Not Found")
    assert body == b"404: Not Found"
    head, body = await exchange(gw, "/docs/a.txt")  # the same without the newline
    assert (head[:12], body) == (b"HTTP/1.1 403", b'{"error":"missing_token"}\n')
