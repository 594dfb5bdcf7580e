"""The send timeout against a real S3 server: a client that stops reading a large download has
its connection closed after `send_timeout`, on each write path (the zero-copy relay, aiohttp's
copying writes, the cache's sendfile of a disk hit, and over TLS), and lets go of storage and
its stream slot; a client that keeps reading, however slowly, is never cut (over TLS too)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
import ssl
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from aiohttp import web

from gateway import relay
from gateway.app import PublicListener, create_app
from gateway.observability.access_log import lines as access_lines
from gateway.services import SERVICES
from gateway.settings import Settings
from tests.integration.harness import (
    Keys,
    RunningGateway,
    make_keys,
    running_gateway,
    s3_gateway_settings,
)
from tests.polling import eventually
from tests.servers import S3Server, write_certificate

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(not relay.AVAILABLE, reason="the relay and sendfile paths are Linux's"),
]

SIZE = 16 * 1024 * 1024  # more than the client's, the gateway's and the kernel's buffers hold
SEND_TIMEOUT = "0.5"
WITHIN = 30.0  # a hang guard: what must happen long before, never a measure


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> Keys:
    return make_keys(tmp_path_factory.mktemp("keys"))


@pytest.fixture(scope="module")
def large(s3_server: S3Server) -> bytes:
    body = os.urandom(SIZE)
    s3_server.client().put_object(Bucket="private", Key="send/large.bin", Body=body)
    return body


def logged_settings(
    s3_server: S3Server, keys: Keys, monkeypatch: pytest.MonkeyPatch, **extra: str
) -> Settings:
    """A gateway over the bucket's `send` prefix with the short send timeout, writing access
    lines as `gateway serve` configures it."""
    settings = s3_gateway_settings(
        monkeypatch,
        s3_server,
        "s3://private/send",
        keys.gateway_file,
        send_timeout=SEND_TIMEOUT,
        access_log="true",
        **extra,
    )
    monkeypatch.setattr(access_lines, "enabled", True)
    return settings


@contextlib.asynccontextmanager
async def gateway(
    s3_server: S3Server, keys: Keys, monkeypatch: pytest.MonkeyPatch, **extra: str
) -> AsyncIterator[RunningGateway]:
    settings = logged_settings(s3_server, keys, monkeypatch, **extra)
    async with running_gateway(settings) as running:
        yield running


async def open_client(gw: RunningGateway, target: str) -> socket.socket:
    """A raw connection with a small receive buffer that has sent a GET for `target`."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # before connect: the window
    sock.setblocking(False)
    loop = asyncio.get_running_loop()
    await loop.sock_connect(sock, ("127.0.0.1", gw.server.port))
    request = f"GET {target} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
    await loop.sock_sendall(sock, request.encode())
    return sock


async def drain_until_closed(sock: socket.socket) -> int:
    """Read what the gateway sent until it closed the connection (EOF or RST); the count."""
    loop = asyncio.get_running_loop()
    count = 0
    async with asyncio.timeout(WITHIN):
        while True:
            try:
                chunk = await loop.sock_recv(sock, 1 << 20)
            except ConnectionResetError:
                return count
            if not chunk:
                return count
            count += len(chunk)


def closed_for_send_timeout(gw: RunningGateway | TlsGateway) -> float:
    return gw.metric("gateway_connections_closed_total", reason="send_timeout")


def requests(gw: RunningGateway, reason: str) -> float:
    return gw.metric("gateway_requests_total", method="GET", status="200", reason=reason)


@pytest.mark.parametrize(
    "path",
    [
        pytest.param({"zero_copy": "true"}, id="relay"),
        pytest.param({"zero_copy": "false"}, id="copying"),
        pytest.param({"cache": "true"}, id="cache-disk-hit"),
    ],
)
async def test_a_client_that_stops_reading_is_closed_after_the_send_timeout(
    s3_server: S3Server,
    keys: Keys,
    large: bytes,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    path: dict[str, str],
) -> None:
    extra = {**path, "cache_dir": str(tmp_path / "cache")} if "cache" in path else path
    async with gateway(s3_server, keys, monkeypatch, **extra) as gw:
        target = keys.sign("/large.bin")
        if "cache" in path:  # warm: the whole object in disk slices
            response, body = await gw.request("GET", target)
            assert (response.status, len(body)) == (200, SIZE)
            assert gw.metric("gateway_cache_requests_total", state="miss") == 1
        capsys.readouterr()
        sock = await open_client(gw, target)
        with sock:
            await eventually(lambda: closed_for_send_timeout(gw) == 1, within=WITHIN)
            assert await drain_until_closed(sock) < SIZE  # the body never arrived whole
        await eventually(lambda: gw.metric("gateway_streams_in_flight") == 0, within=WITHIN)
        assert requests(gw, "send_timeout") == 1
        assert requests(gw, "client_disconnected") == 0
        if "cache" in path:
            assert gw.metric("gateway_cache_requests_total", state="hit") == 1
        elif path["zero_copy"] == "true":
            assert gw.metric("gateway_spliced_bytes_total") > 0
        else:
            assert gw.metric("gateway_spliced_bytes_total") == 0
        out = capsys.readouterr().out
        logged = [json.loads(line) for line in out.splitlines() if line.startswith('{"ts"')]
        assert [(line["status"], line["reason"]) for line in logged] == [(200, "send_timeout")]
        assert target.partition("?")[2] not in out
        # the gateway still answers, storage included
        response, body = await gw.request("GET", target, {"Range": "bytes=0-99"})
        assert (response.status, body) == (206, large[:100])


@pytest.mark.parametrize("zero_copy", ["true", "false"], ids=["relay", "copying"])
async def test_a_client_that_keeps_reading_slowly_is_never_cut(
    s3_server: S3Server,
    keys: Keys,
    large: bytes,
    monkeypatch: pytest.MonkeyPatch,
    zero_copy: str,
) -> None:
    """It reads a few KiB every 0.1 s for three send timeouts, then the rest at full speed."""
    async with gateway(s3_server, keys, monkeypatch, zero_copy=zero_copy) as gw:
        sock = await open_client(gw, keys.sign("/large.bin"))
        loop = asyncio.get_running_loop()
        received = bytearray()
        slow_until = loop.time() + 3 * float(SEND_TIMEOUT)
        with sock:
            async with asyncio.timeout(WITHIN):
                while not received.endswith(large[-1000:]):
                    slow = loop.time() < slow_until
                    chunk = await loop.sock_recv(sock, 4096 if slow else 1 << 20)
                    assert chunk, f"closed after {len(received)} bytes"
                    received += chunk
                    if slow:
                        await asyncio.sleep(0.1)  # the client's pace, not a synchronisation
        head, _, body = bytes(received).partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200")
        assert body == large
        await eventually(lambda: requests(gw, "ok") == 1, within=WITHIN)
        assert closed_for_send_timeout(gw) == 0


# --- over TLS --------------------------------------------------------------------------------
# Bytes are encrypted in user space (gateway/tls.py), so the body goes by aiohttp's copying
# writes into uvloop's TLS transport, whose buffer pauses the protocol's writing as a plain
# socket's does: the same watch must see a client that stops reading, and one that reads slowly.


class TlsClient:
    """TLS over the raw connection of `open_client`, in memory (`ssl.MemoryBIO`): the socket is
    read only when the test reads, as much as it asks for, so what the gateway sees of the
    client's reading is the test's own pace (a TLS library's read-ahead would read in bursts)."""

    def __init__(self, sock: socket.socket, context: ssl.SSLContext) -> None:
        self.sock = sock
        self.incoming, self.outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
        self.tls = context.wrap_bio(self.incoming, self.outgoing, server_hostname="127.0.0.1")

    async def handshake(self) -> None:
        while True:
            try:
                self.tls.do_handshake()
                break
            except ssl.SSLWantReadError:
                await self._flush()
                await self.recv(1 << 16)
        await self._flush()

    async def send(self, data: bytes) -> None:
        self.tls.write(data)
        await self._flush()

    async def recv(self, size: int) -> bytes:
        """Up to `size` bytes from the socket, and whatever plaintext they complete (maybe
        none); ConnectionError once the gateway closed the connection."""
        raw = await asyncio.get_running_loop().sock_recv(self.sock, size)
        if not raw:
            raise ConnectionResetError("closed by the gateway")
        self.incoming.write(raw)
        plain = bytearray()
        with contextlib.suppress(ssl.SSLWantReadError):
            while chunk := self.tls.read(1 << 16):
                plain += chunk
        return bytes(plain)

    async def _flush(self) -> None:
        if data := self.outgoing.read():
            await asyncio.get_running_loop().sock_sendall(self.sock, data)


@dataclass
class TlsGateway:
    """A gateway serving TLS with its own context (`Services.tls`), as `gateway serve` does."""

    app: web.Application
    port: int
    certificate: Path

    def metric(self, name: str, **labels: str) -> float:
        value = self.app[SERVICES].metrics.registry.get_sample_value(name, labels)
        return 0.0 if value is None else value

    async def get(self, target: str) -> tuple[socket.socket, TlsClient]:
        """A TLS connection (small receive buffer) that has sent a GET for `target`."""
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # before connect: the window
        sock.setblocking(False)
        await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", self.port))
        client = TlsClient(sock, ssl.create_default_context(cafile=str(self.certificate)))
        await client.handshake()
        await client.send(f"GET {target} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode())
        return sock, client


@contextlib.asynccontextmanager
async def tls_gateway(
    s3_server: S3Server, keys: Keys, monkeypatch: pytest.MonkeyPatch, directory: Path
) -> AsyncIterator[TlsGateway]:
    certificate, key = write_certificate(directory, "send-timeout")
    settings = logged_settings(
        s3_server, keys, monkeypatch, tls_certificate=str(certificate), tls_key=str(key)
    )
    app = create_app(settings)
    public = PublicListener(app)
    try:
        await public.start()
        tls = app[SERVICES].tls
        assert tls is not None
        await public.server.listen("127.0.0.1", 0, ssl_context=tls.context)
        yield TlsGateway(app, public.port, certificate)
    finally:
        await public.cleanup()


async def test_a_tls_client_that_stops_reading_is_closed_after_the_send_timeout(
    s3_server: S3Server,
    keys: Keys,
    large: bytes,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    async with tls_gateway(s3_server, keys, monkeypatch, tmp_path) as gw:
        target = keys.sign("/large.bin")
        capsys.readouterr()
        sock, _ = await gw.get(target)
        with sock:
            await eventually(lambda: closed_for_send_timeout(gw) == 1, within=WITHIN)
            assert await drain_until_closed(sock) < SIZE  # the body never arrived whole
        await eventually(lambda: gw.metric("gateway_streams_in_flight") == 0, within=WITHIN)
        answered = {"method": "GET", "status": "200"}
        assert gw.metric("gateway_requests_total", **answered, reason="send_timeout") == 1
        assert gw.metric("gateway_requests_total", **answered, reason="client_disconnected") == 0
        out = capsys.readouterr().out
        logged = [json.loads(line) for line in out.splitlines() if line.startswith('{"ts"')]
        assert [(line["status"], line["reason"]) for line in logged] == [(200, "send_timeout")]
        assert target.partition("?")[2] not in out


async def test_a_tls_client_that_keeps_reading_slowly_is_never_cut(
    s3_server: S3Server, keys: Keys, large: bytes, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """It reads a few KiB every 0.1 s for three send timeouts, then the rest at full speed:
    the watch sees it read through the TLS transport's socket (bytes acknowledged)."""
    async with tls_gateway(s3_server, keys, monkeypatch, tmp_path) as gw:
        sock, client = await gw.get(keys.sign("/large.bin"))
        loop = asyncio.get_running_loop()
        received = bytearray()
        slow_until = loop.time() + 3 * float(SEND_TIMEOUT)
        with sock:
            async with asyncio.timeout(WITHIN):
                while not received.endswith(large[-1000:]):
                    slow = loop.time() < slow_until
                    received += await client.recv(4096 if slow else 1 << 20)
                    if slow:
                        await asyncio.sleep(0.1)  # the client's pace, not a synchronisation
        head, _, body = bytes(received).partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200")
        assert body == large
        ok = {"method": "GET", "status": "200", "reason": "ok"}
        await eventually(lambda: gw.metric("gateway_requests_total", **ok) == 1, within=WITHIN)
        assert closed_for_send_timeout(gw) == 0
