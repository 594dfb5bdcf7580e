"""The gateway in front of a real S3 server (SeaweedFS), end to end over loopback."""

from __future__ import annotations

import hashlib
import os
import signal
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import AbstractAsyncContextManager
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from gateway.http.conditionals import format_http_date
from tests.descriptors import connections_to
from tests.integration.harness import (
    Keys,
    RunningGateway,
    gateway_settings,
    make_keys,
    running_gateway,
    s3_gateway_settings,
    use_credentials,
)
from tests.polling import eventually
from tests.servers import S3Server

pytestmark = pytest.mark.integration

SMALL = b"hello, private world\n" * 50  # 1050 bytes
MEDIUM = os.urandom(3 * 1024 * 1024 + 17)
LARGE_SIZE = 64 * 1024 * 1024
OBJECTS: dict[str, bytes] = {
    "media/docs/hello.txt": SMALL,
    "media/video/clip.bin": MEDIUM,
    "media/Über uns/file name+1.txt": b"unicode key\n",
    "media/a\\b.txt": b"backslash\n",
    "secret.txt": b"outside the configured prefix\n",
}


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> Keys:
    return make_keys(tmp_path_factory.mktemp("keys"))


@pytest.fixture(scope="module")
def stored(s3_server: S3Server) -> dict[str, Any]:
    client = s3_server.client()
    for key, body in OBJECTS.items():
        content_type = "text/plain" if key.endswith(".txt") else "application/octet-stream"
        client.put_object(Bucket="private", Key=key, Body=body, ContentType=content_type)
    return {key: client.head_object(Bucket="private", Key=key) for key in OBJECTS}


@pytest.fixture
def aws_env(s3_server: S3Server, monkeypatch: pytest.MonkeyPatch) -> None:
    use_credentials(monkeypatch, s3_server)


#: Cache settings for the modes `gw` runs in: 1 MiB slices make MEDIUM four slices on disk
#: (the last one 17 bytes), while SMALL lives in the memory tier.
CACHE_MODES: dict[str, dict[str, str]] = {
    "cache_off": {},
    "cache_cold": {"cache": "true", "cache_slice_bytes": str(1024 * 1024)},
    "cache_warm": {"cache": "true", "cache_slice_bytes": str(1024 * 1024)},
}
#: Run a test against the gateway with the cache off, on and empty, and on and holding every
#: object: HTTP semantics must not depend on it.
in_every_cache_mode = pytest.mark.parametrize("gw", list(CACHE_MODES), indirect=True)


@pytest.fixture
async def gw(
    request: pytest.FixtureRequest,
    s3_server: S3Server,
    keys: Keys,
    stored: dict[str, Any],
    aws_env: None,
    tmp_path: Path,
) -> AsyncIterator[RunningGateway]:
    mode = getattr(request, "param", "cache_off")
    cache = {"cache_dir": str(tmp_path / "cache"), **CACHE_MODES[mode]} if CACHE_MODES[mode] else {}
    settings = gateway_settings(
        "s3://private/media",
        keys.gateway_file,
        s3_endpoint_url=s3_server.endpoint_url,
        **cache,
    )
    async with running_gateway(settings) as running:
        if mode == "cache_warm":
            for path in ("/docs/hello.txt", "/video/clip.bin", "/Über uns/file name+1.txt"):
                response, _ = await running.request("GET", keys.sign(path))
                assert response.status == 200
            assert running.metric("gateway_cache_requests_total", state="miss") == 3
        yield running
        if mode == "cache_warm":  # what the test asked was answered from the cache
            assert running.metric("gateway_cache_requests_total", state="miss") == 3


# --- the happy path -------------------------------------------------------------------------


@in_every_cache_mode
async def test_get_streams_the_object_with_its_headers(
    gw: RunningGateway, keys: Keys, stored: dict[str, Any]
) -> None:
    response, body = await gw.request("GET", keys.sign("/video/clip.bin"))
    assert response.status == 200
    assert hashlib.sha256(body).digest() == hashlib.sha256(MEDIUM).digest()
    head = stored["media/video/clip.bin"]
    assert response.headers["Content-Length"] == str(len(MEDIUM))
    assert response.headers["Content-Type"] == "application/octet-stream"
    assert response.headers["ETag"] == head["ETag"]
    assert response.headers["Last-Modified"] == format_http_date(head["LastModified"])
    assert response.headers["Accept-Ranges"] == "bytes"
    assert response.headers["Cache-Control"] == "private, max-age=300"


async def test_no_storage_headers_leak(gw: RunningGateway, keys: Keys) -> None:
    response, _ = await gw.request("GET", keys.sign("/docs/hello.txt"))
    leaked = [h for h in response.headers if h.lower().startswith(("x-amz", "seaweed"))]
    assert leaked == []
    assert response.headers["Server"] == "edge-gateway"
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["Referrer-Policy"] == "no-referrer"


@in_every_cache_mode
async def test_unicode_keys_map_exactly(gw: RunningGateway, keys: Keys) -> None:
    response, body = await gw.request("GET", keys.sign("/Über uns/file name+1.txt"))
    assert (response.status, body) == (200, b"unicode key\n")


@in_every_cache_mode
async def test_head_sends_headers_without_a_body(gw: RunningGateway, keys: Keys) -> None:
    response, body = await gw.request("HEAD", keys.sign("/docs/hello.txt"))
    assert response.status == 200
    assert body == b""
    assert response.headers["Content-Length"] == str(len(SMALL))
    assert response.headers["Content-Type"] == "text/plain"


# --- ranges ----------------------------------------------------------------------------------


@in_every_cache_mode
@pytest.mark.parametrize(
    ("header", "status", "start", "end"),
    [
        ("bytes=0-", 206, 0, len(MEDIUM) - 1),
        ("bytes=0-0", 206, 0, 0),
        ("bytes=100-199", 206, 100, 199),
        ("bytes=-500", 206, len(MEDIUM) - 500, len(MEDIUM) - 1),
        (f"bytes={len(MEDIUM) - 10}-{len(MEDIUM) + 1000}", 206, len(MEDIUM) - 10, len(MEDIUM) - 1),
        ("bytes=0-1,5-6", 200, 0, len(MEDIUM) - 1),
        ("bytes=abc", 200, 0, len(MEDIUM) - 1),
        ("items=0-1", 200, 0, len(MEDIUM) - 1),
    ],
)
async def test_single_ranges_get_206_and_others_the_whole_object(
    gw: RunningGateway, keys: Keys, header: str, status: int, start: int, end: int
) -> None:
    response, body = await gw.request("GET", keys.sign("/video/clip.bin"), {"Range": header})
    assert response.status == status
    assert body == MEDIUM[start : end + 1]
    assert response.headers["Content-Length"] == str(end - start + 1)
    if status == 206:
        assert response.headers["Content-Range"] == f"bytes {start}-{end}/{len(MEDIUM)}"
    else:
        assert "Content-Range" not in response.headers


@in_every_cache_mode
@pytest.mark.parametrize("method", ["GET", "HEAD"])
@pytest.mark.parametrize("header", [f"bytes={len(MEDIUM)}-", "bytes=-0"])
async def test_unsatisfiable_ranges_get_416_with_the_size(
    gw: RunningGateway, keys: Keys, method: str, header: str
) -> None:
    response, _ = await gw.request(method, keys.sign("/video/clip.bin"), {"Range": header})
    assert response.status == 416
    assert response.headers["Content-Range"] == f"bytes */{len(MEDIUM)}"


@in_every_cache_mode
async def test_head_with_a_range_describes_the_partial_response(
    gw: RunningGateway, keys: Keys
) -> None:
    response, _ = await gw.request("HEAD", keys.sign("/video/clip.bin"), {"Range": "bytes=10-19"})
    assert response.status == 206
    assert response.headers["Content-Range"] == f"bytes 10-19/{len(MEDIUM)}"
    assert response.headers["Content-Length"] == "10"


# --- conditionals ----------------------------------------------------------------------------


def _validators(stored: dict[str, Any]) -> tuple[str, datetime]:
    head = stored["media/docs/hello.txt"]
    return head["ETag"], head["LastModified"]


@in_every_cache_mode
@pytest.mark.parametrize("method", ["GET", "HEAD"])
@pytest.mark.parametrize(
    ("case", "status"),
    [
        ("if-none-match-same", 304),
        ("if-none-match-star", 304),
        ("if-none-match-other", 200),
        ("if-modified-since-later", 304),
        ("if-modified-since-earlier", 200),
        ("if-match-same", 200),
        ("if-match-other", 412),
        ("if-unmodified-since-earlier", 412),
        ("if-unmodified-since-later", 200),
    ],
)
async def test_conditional_requests(
    gw: RunningGateway, keys: Keys, stored: dict[str, Any], method: str, case: str, status: int
) -> None:
    etag, modified = _validators(stored)
    later = format_http_date(modified + timedelta(hours=1))
    earlier = format_http_date(modified - timedelta(hours=1))
    headers = {
        "if-none-match-same": {"If-None-Match": etag},
        "if-none-match-star": {"If-None-Match": "*"},
        "if-none-match-other": {"If-None-Match": '"other"'},
        "if-modified-since-later": {"If-Modified-Since": later},
        "if-modified-since-earlier": {"If-Modified-Since": earlier},
        "if-match-same": {"If-Match": etag},
        "if-match-other": {"If-Match": '"other"'},
        "if-unmodified-since-earlier": {"If-Unmodified-Since": earlier},
        "if-unmodified-since-later": {"If-Unmodified-Since": later},
    }[case]
    response, body = await gw.request(method, keys.sign("/docs/hello.txt"), headers)
    assert response.status == status
    if status == 304:
        assert body == b""
        assert response.headers["ETag"] == etag


@in_every_cache_mode
@pytest.mark.parametrize(("matches", "status"), [(True, 206), (False, 200)])
async def test_if_range_honours_the_range_only_for_the_same_object(
    gw: RunningGateway, keys: Keys, stored: dict[str, Any], matches: bool, status: int
) -> None:
    etag, _ = _validators(stored)
    headers = {"Range": "bytes=0-4", "If-Range": etag if matches else '"stale"'}
    response, body = await gw.request("GET", keys.sign("/docs/hello.txt"), headers)
    assert response.status == status
    assert body == (SMALL[:5] if matches else SMALL)


# --- what is refused -------------------------------------------------------------------------


async def test_a_missing_object_is_404(gw: RunningGateway, keys: Keys) -> None:
    response, body = await gw.request("GET", keys.sign("/docs/nothing-here.txt"))
    assert (response.status, body) == (404, b'{"error":"not_found"}\n')


async def test_objects_outside_the_configured_prefix_cannot_be_named(
    gw: RunningGateway, keys: Keys
) -> None:
    response, _ = await gw.request("GET", keys.sign("/secret.txt"))
    assert response.status == 404  # the key is media/secret.txt, which does not exist


@pytest.mark.parametrize(
    ("target", "status", "code"),
    [
        ("/docs/../../secret.txt?{token}", 403, "malformed_token"),
        ("/docs/%2E%2E/%2E%2E/secret.txt?{token}", 403, "malformed_token"),
        ("/docs%2F..%2F..%2Fsecret.txt?{token}", 403, "malformed_token"),
        ("/docs/%00.txt?{token}", 403, "malformed_token"),
    ],
)
async def test_traversal_attempts_are_refused(
    gw: RunningGateway, keys: Keys, target: str, status: int, code: str
) -> None:
    token = keys.sign("/docs/hello.txt").partition("?")[2]
    response, body = await gw.request("GET", target.format(token=token))
    assert response.status == status
    assert body == b'{"error":"%s"}\n' % code.encode()


async def test_a_signed_backslash_path_is_a_bad_request(gw: RunningGateway, keys: Keys) -> None:
    response, body = await gw.request("GET", keys.sign("/a\\b.txt"))
    assert (response.status, body) == (400, b'{"error":"invalid_path"}\n')


def _rejections(keys: Keys) -> list[tuple[str, str, str, dict[str, str]]]:
    now = time.time()
    good = keys.sign("/docs/hello.txt")
    old_key = Keys(keys.signing.activated("old"), keys.gateway_file)
    return [
        ("missing_token", "GET", "/docs/hello.txt", {}),
        ("missing_token", "GET", "/docs/hello.txt?w=1", {}),
        ("malformed_token", "GET", good.replace("Expires=", "Expires=0"), {}),
        ("malformed_token", "GET", good + "&extra=1", {}),
        ("unknown_key", "GET", good.replace("KeyID=live", "KeyID=nobody"), {}),
        ("retired_key", "GET", good.replace("KeyID=live", "KeyID=gone"), {}),
        ("bad_signature", "GET", good.replace("hello", "hellO"), {}),
        (
            "expired",
            "GET",
            keys.sign("/docs/hello.txt", expires_at=int(now) - 120, now=now - 600),
            {},
        ),
        (
            "not_yet_valid",
            "GET",
            keys.sign("/docs/hello.txt", starts_at=int(now) + 600, expires_in=3600),
            {},
        ),
        ("issued_in_future", "GET", keys.sign("/docs/hello.txt", now=now + 3600), {}),
        ("ip_mismatch", "GET", keys.sign("/docs/hello.txt", ip="10.0.0.0/8"), {}),
        ("wrong_method", "HEAD", keys.sign("/docs/hello.txt", method="PUT"), {}),
        ("wrong_method", "GET", keys.sign("/docs/hello.txt", method="HEAD"), {}),
        (
            "outside_prefix",
            "GET",
            "/video/clip.bin?" + keys.sign("/docs/hello.txt", prefix="/docs/").partition("?")[2],
            {},
        ),
        (
            "bad_signature",
            "GET",
            old_key.sign("/docs/hello.txt").replace("KeyID=old", "KeyID=live"),
            {},
        ),
    ]


async def test_every_rejection_is_403_with_its_reason_and_never_reaches_storage(
    gw: RunningGateway, keys: Keys
) -> None:
    for reason, method, target, headers in _rejections(keys):
        response, body = await gw.request(method, target, headers)
        assert response.status == 403, reason
        if method == "GET":
            assert body == b'{"error":"%s"}\n' % reason.encode(), reason
        assert gw.metric("gateway_requests_total", method=method, status="403", reason=reason) >= 1
    assert gw.metric("gateway_storage_errors_total", kind="not_found") == 0


async def test_a_link_signed_with_a_verify_key_is_accepted(gw: RunningGateway, keys: Keys) -> None:
    old_key = Keys(keys.signing.activated("old"), keys.gateway_file)
    response, _ = await gw.request("GET", old_key.sign("/docs/hello.txt"))
    assert response.status == 200


@pytest.mark.parametrize("method", ["POST", "DELETE", "PATCH"])
async def test_other_methods_are_405(gw: RunningGateway, keys: Keys, method: str) -> None:
    response, _ = await gw.request(method, keys.sign("/docs/hello.txt"))
    assert response.status == 405
    assert response.headers["Allow"] == "GET, HEAD, PUT"


async def test_a_put_with_a_download_link_is_refused(gw: RunningGateway, keys: Keys) -> None:
    response, body = await gw.request("PUT", keys.sign("/docs/hello.txt"))
    assert response.status == 403
    assert body == b'{"error":"wrong_method"}\n'


# --- client address ----------------------------------------------------------------------


async def test_spoofed_forwarded_for_from_an_untrusted_peer_is_ignored(
    gw: RunningGateway, keys: Keys
) -> None:
    target = keys.sign("/docs/hello.txt", ip="203.0.113.9")
    response, body = await gw.request("GET", target, {"X-Forwarded-For": "203.0.113.9"})
    assert (response.status, body) == (403, b'{"error":"ip_mismatch"}\n')


async def test_forwarded_for_from_a_trusted_proxy_is_the_client(
    s3_server: S3Server, keys: Keys, stored: dict[str, Any], aws_env: None
) -> None:
    settings = gateway_settings(
        "s3://private/media",
        keys.gateway_file,
        s3_endpoint_url=s3_server.endpoint_url,
        trusted_proxies="127.0.0.0/8",
    )
    async with running_gateway(settings) as gw:
        target = keys.sign("/docs/hello.txt", ip="203.0.113.9")
        chain = {"X-Forwarded-For": "198.51.100.1, 203.0.113.9, 127.0.0.5"}
        response, _ = await gw.request("GET", target, chain)
        assert response.status == 200
        response, _ = await gw.request("GET", target, {"X-Forwarded-For": "198.51.100.1"})
        assert response.status == 403


# --- streaming under failure -----------------------------------------------------------------


@pytest.fixture(scope="module")
def large_object(s3_server: S3Server) -> str:
    key = "media/large.bin"
    block = os.urandom(1024 * 1024)
    s3_server.client().put_object(
        Bucket="private", Key=key, Body=block * (LARGE_SIZE // len(block))
    )
    return "/large.bin"


async def test_a_client_that_disconnects_mid_stream_leaks_nothing(
    gw: RunningGateway, keys: Keys, large_object: str, s3_server: S3Server
) -> None:
    async with gw.session.get(gw.url(keys.sign(large_object))) as response:
        assert response.status == 200
        await response.content.readexactly(1024 * 1024)
        await eventually(lambda: gw.metric("gateway_streams_in_flight") == 1)
        reading = connections_to(s3_server.port)  # the body's own among them
        response.close()  # drop the connection with most of the body unread
    await eventually(lambda: gw.metric("gateway_streams_in_flight") == 0)
    # the store released the body: its half-read connection to storage is closed
    await eventually(lambda: connections_to(s3_server.port) < reading)
    assert (
        gw.metric(
            "gateway_requests_total", method="GET", status="200", reason="client_disconnected"
        )
        == 1
    )
    response, body = await gw.request("GET", keys.sign("/docs/hello.txt"))
    assert (response.status, body) == (200, SMALL)


@pytest.fixture
def doomed_s3(tmp_path: Path) -> Iterator[S3Server]:
    from tests.servers import start_seaweedfs

    server = start_seaweedfs(tmp_path)
    try:
        client = server.client()
        client.create_bucket(Bucket="doomed")
        block = os.urandom(1024 * 1024)
        client.put_object(Bucket="doomed", Key="large.bin", Body=block * (LARGE // len(block)))
        yield server
    finally:
        server.stop()


LARGE = 64 * 1024 * 1024


def doomed_gateway(
    doomed_s3: S3Server,
    keys: Keys,
    monkeypatch: pytest.MonkeyPatch,
    *,
    idle_timeout: str,
    zero_copy: str,
) -> AbstractAsyncContextManager[RunningGateway]:
    settings = s3_gateway_settings(
        monkeypatch,
        doomed_s3,
        "s3://doomed",
        keys.gateway_file,
        idle_timeout=idle_timeout,
        zero_copy=zero_copy,
    )
    return running_gateway(settings)


async def read_until_broken(response: aiohttp.ClientResponse) -> int:
    """The bytes received before the connection broke; fails if it ended cleanly."""
    received = 0

    async def drain() -> None:
        nonlocal received
        while chunk := await response.content.readany():
            received += len(chunk)

    with pytest.raises(aiohttp.ClientPayloadError):
        await drain()
    return received


@pytest.mark.parametrize("zero_copy", ["true", "false"], ids=["zero_copy", "copying"])
async def test_storage_dying_mid_stream_aborts_the_client_connection(
    doomed_s3: S3Server, keys: Keys, monkeypatch: pytest.MonkeyPatch, zero_copy: str
) -> None:
    async with doomed_gateway(
        doomed_s3, keys, monkeypatch, idle_timeout="5", zero_copy=zero_copy
    ) as gw:
        async with gw.session.get(gw.url(keys.sign("/large.bin"))) as response:
            assert response.status == 200
            assert response.headers["Content-Length"] == str(LARGE)
            received = len(await response.content.readexactly(256 * 1024))
            doomed_s3.kill()
            received += await read_until_broken(response)
        assert received < LARGE
        await eventually(lambda: gw.metric("gateway_streams_in_flight") == 0)
        assert (
            gw.metric("gateway_requests_total", method="GET", status="200", reason="origin_aborted")
            == 1
        )


@pytest.mark.parametrize("zero_copy", ["true", "false"], ids=["zero_copy", "copying"])
async def test_storage_going_silent_mid_stream_aborts_after_the_idle_timeout(
    doomed_s3: S3Server, keys: Keys, monkeypatch: pytest.MonkeyPatch, zero_copy: str
) -> None:
    assert doomed_s3.process is not None
    async with doomed_gateway(
        doomed_s3, keys, monkeypatch, idle_timeout="0.5", zero_copy=zero_copy
    ) as gw:
        async with gw.session.get(gw.url(keys.sign("/large.bin"))) as response:
            assert response.status == 200
            received = len(await response.content.readexactly(256 * 1024))
            os.kill(doomed_s3.process.pid, signal.SIGSTOP)  # alive, connected, sending nothing
            try:
                received += await read_until_broken(response)
            finally:
                os.kill(doomed_s3.process.pid, signal.SIGCONT)
        assert received < LARGE
        await eventually(lambda: gw.metric("gateway_streams_in_flight") == 0)
        assert gw.metric("gateway_storage_errors_total", kind="origin_timeout") == 1
        assert (
            gw.metric("gateway_requests_total", method="GET", status="200", reason="origin_aborted")
            == 1
        )


# --- storage unavailable ---------------------------------------------------------------------


async def test_storage_refusing_our_credentials_is_502(
    s3_server: S3Server, keys: Keys, stored: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = s3_gateway_settings(monkeypatch, s3_server, "s3://private/media", keys.gateway_file)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "wrong-secret")
    async with running_gateway(settings) as gw:
        response, body = await gw.request("GET", keys.sign("/docs/hello.txt"))
        assert (response.status, body) == (502, b'{"error":"origin_error"}\n')
        assert b"xml" not in body.lower()


async def test_storage_that_is_down_is_502(keys: Keys, aws_env: None) -> None:
    from tests.servers import free_port

    settings = gateway_settings(
        "s3://private", keys.gateway_file, s3_endpoint_url=f"http://127.0.0.1:{free_port()}"
    )
    async with running_gateway(settings) as gw:
        response, body = await gw.request("GET", keys.sign("/docs/hello.txt"))
        assert (response.status, body) == (502, b'{"error":"origin_error"}\n')
        status, _text = await gw.admin_get("/readyz")
        assert status == 503


async def test_storage_that_never_answers_is_504(keys: Keys, aws_env: None) -> None:
    import asyncio

    async def black_hole(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(65536)  # read the request, answer nothing
        await asyncio.Event().wait()

    hole = await asyncio.start_server(black_hole, "127.0.0.1", 0)
    port = hole.sockets[0].getsockname()[1]
    settings = gateway_settings(
        "s3://private",
        keys.gateway_file,
        s3_endpoint_url=f"http://127.0.0.1:{port}",
        first_byte_timeout="0.5",
    )
    try:
        async with running_gateway(settings) as gw:
            started = time.monotonic()
            response, body = await gw.request("GET", keys.sign("/docs/hello.txt"))
            assert (response.status, body) == (504, b'{"error":"origin_timeout"}\n')
            assert time.monotonic() - started < 5
    finally:
        hole.close()


async def test_health_and_readiness(gw: RunningGateway) -> None:
    assert await gw.admin_get("/healthz") == (200, "ok\n")
    status, text = await gw.admin_get("/readyz")
    assert status == 200
    assert text.startswith("ready")
