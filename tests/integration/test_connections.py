"""Client connections: an idle connection is closed at its deadline, and past the cap the
longest idle go first (`gateway.connections`), so slow or silent clients cannot use up the
descriptors that everyone else's requests need.

The in-process gateway (file origin) runs with deadlines of a fraction of a second. The attack
at the end runs against a real `gateway serve` whose open-file limit is 1024.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import resource
import shutil
import statistics
import subprocess
import sys
import time
import urllib.request
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families
from yarl import URL

from gateway.connections import auto_cap
from signer import Algorithm, Keyring, Status, new_key, sign_path
from tests.integration.harness import Keys, RunningGateway, gateway_settings, make_keys
from tests.integration.harness import running_gateway as start_gateway
from tests.polling import eventually
from tests.servers import free_port

pytestmark = pytest.mark.integration

QUICK = "0.3"  # seconds: the deadlines of the in-process gateway
GUARD = 10.0  # seconds to wait for what must happen long before: a hang guard, never a measure


@pytest.fixture
def objects(tmp_path: Path) -> Path:
    root = tmp_path / "objects"
    root.mkdir()
    (root / "a.txt").write_bytes(b"a\n")
    (root / "up").mkdir()
    return root


@pytest.fixture
def keys(tmp_path: Path) -> Keys:
    return make_keys(tmp_path)


@contextlib.asynccontextmanager
async def running_gateway(objects: Path, keys: Keys, **extra: str) -> AsyncIterator[RunningGateway]:
    settings = gateway_settings(
        f"file://{objects}",
        keys.gateway_file,
        **{"header_timeout": QUICK, "keepalive_timeout": QUICK, **extra},
    )
    async with start_gateway(settings) as gateway:
        yield gateway


@dataclass
class Raw:
    """One hand-driven connection to the gateway."""

    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter

    @classmethod
    async def open(cls, gateway: RunningGateway) -> Raw:
        return cls(*await asyncio.open_connection("127.0.0.1", gateway.server.port))

    async def get(self, target: str) -> bytes:
        """GET `target` on this connection (kept alive); the status line of the answer."""
        self.writer.write(f"GET {target} HTTP/1.1\r\nHost: gw\r\n\r\n".encode())
        return await self.answer()

    async def answer(self) -> bytes:
        async with asyncio.timeout(GUARD):
            head = await self.reader.readuntil(b"\r\n\r\n")
            length = next(
                int(line.split(b":")[1])
                for line in head.split(b"\r\n")
                if line.lower().startswith(b"content-length:")
            )
            await self.reader.readexactly(length)
        return head.split(b"\r\n")[0]

    async def closed_by_gateway(self) -> bool:
        """Whether the gateway ends this connection (reading until it does, within GUARD)."""
        try:
            async with asyncio.timeout(GUARD):
                return await self.reader.read() == b""
        except ConnectionResetError:
            return True
        except TimeoutError:
            return False

    async def send_slowly(self, data: bytes, every: float) -> bool:
        """Send `data` a byte every `every` seconds (the pace of the client under test, not a
        wait for the gateway); whether the gateway closed the connection before the end."""
        for byte in data:
            self.writer.write(bytes([byte]))
            await asyncio.sleep(every)
            if self.reader.at_eof() or self.reader.exception() is not None:
                return True
        return False

    def close(self) -> None:
        self.writer.close()


# --- deadlines -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "sent",
    [b"", b"G", b"GET /a.txt HTTP/1.1\r\nHost: gw\r\n"],
    ids=["nothing", "one byte", "a head without its end"],
)
async def test_a_connection_without_a_complete_head_is_closed_at_the_header_timeout(
    objects: Path, keys: Keys, sent: bytes
) -> None:
    async with running_gateway(objects, keys) as gateway:
        raw = await Raw.open(gateway)
        raw.writer.write(sent)

        assert await raw.closed_by_gateway()
        assert gateway.metric("gateway_connections_closed_total", reason="header_timeout") == 1


async def test_a_head_trickled_a_byte_at_a_time_is_closed_at_the_header_timeout(
    objects: Path, keys: Keys
) -> None:
    async with running_gateway(objects, keys) as gateway:
        raw = await Raw.open(gateway)
        endless = b"GET /a.txt HTTP/1.1\r\nX-Slow: " + b"a" * 200  # 200 x 0.05 s: 10 s at most

        assert await raw.send_slowly(endless, every=0.05)
        assert gateway.metric("gateway_connections_closed_total", reason="header_timeout") == 1


async def test_a_kept_alive_connection_is_closed_at_the_keepalive_timeout_after_its_response(
    objects: Path, keys: Keys
) -> None:
    async with running_gateway(objects, keys, header_timeout="60") as gateway:
        raw = await Raw.open(gateway)
        assert await raw.get(keys.sign("/a.txt")) == b"HTTP/1.1 200 OK"

        assert await raw.closed_by_gateway()
        assert gateway.metric("gateway_connections_closed_total", reason="keepalive_timeout") == 1
        assert gateway.metric("gateway_connections_closed_total", reason="header_timeout") == 0


async def test_a_kept_alive_connection_serves_requests_until_it_falls_idle(
    objects: Path, keys: Keys
) -> None:
    async with running_gateway(objects, keys, keepalive_timeout="60") as gateway:
        raw = await Raw.open(gateway)
        for _ in range(3):
            assert await raw.get(keys.sign("/a.txt")) == b"HTTP/1.1 200 OK"
        raw.close()
        await eventually(lambda: gateway.metric("gateway_client_connections") == 0)
        assert gateway.metric("gateway_connections_closed_total", reason="header_timeout") == 0


async def test_a_request_being_handled_outlasts_both_deadlines(objects: Path, keys: Keys) -> None:
    async with running_gateway(objects, keys) as gateway:
        raw = await Raw.open(gateway)
        body = b"0123456789"  # a byte every 0.15 s: 1.5 s, five times the deadlines
        raw.writer.write(
            f"PUT {keys.sign('/up/slow.txt', method='PUT')} HTTP/1.1\r\nHost: gw\r\n"
            f"Content-Length: {len(body)}\r\n\r\n".encode()
        )

        assert not await raw.send_slowly(body, every=0.15)
        assert await raw.answer() == b"HTTP/1.1 201 Created"
        assert (objects / "up" / "slow.txt").read_bytes() == body


# --- the cap ---------------------------------------------------------------------------------


async def test_past_the_cap_the_connections_idle_the_longest_are_closed_first(
    objects: Path, keys: Keys
) -> None:
    async with running_gateway(objects, keys, max_connections="3", **_NO_DEADLINES) as gateway:
        first, second, third = [await Raw.open(gateway) for _ in range(3)]
        assert await second.get(keys.sign("/a.txt")) == b"HTTP/1.1 200 OK"  # idle since now

        fourth = await Raw.open(gateway)
        assert await first.closed_by_gateway()
        fifth = await Raw.open(gateway)
        assert await third.closed_by_gateway()

        for survivor in (second, fourth, fifth):
            assert await survivor.get(keys.sign("/a.txt")) == b"HTTP/1.1 200 OK"
        assert gateway.metric("gateway_connections_closed_total", reason="over_capacity") == 2


async def test_at_the_cap_with_every_connection_busy_a_new_connection_is_closed(
    objects: Path, keys: Keys
) -> None:
    async with running_gateway(objects, keys, max_connections="1", **_NO_DEADLINES) as gateway:
        uploading = await Raw.open(gateway)
        uploading.writer.write(
            f"PUT {keys.sign('/up/busy.txt', method='PUT')} HTTP/1.1\r\nHost: gw\r\n"
            "Content-Length: 4\r\nExpect: 100-continue\r\n\r\n".encode()
        )
        assert await uploading.reader.readuntil(b"\r\n\r\n") == b"HTTP/1.1 100 Continue\r\n\r\n"

        newcomer = await Raw.open(gateway)
        assert await newcomer.closed_by_gateway()

        uploading.writer.write(b"busy")
        assert await uploading.answer() == b"HTTP/1.1 201 Created"
        assert gateway.metric("gateway_connections_closed_total", reason="over_capacity") == 1


_NO_DEADLINES = {"header_timeout": "60", "keepalive_timeout": "60"}


# --- the attack, against `gateway serve` with 1024 descriptors ---------------------------------

OPEN_FILES = 1024
CAP = auto_cap(OPEN_FILES, origin_connections=256)  # what max_connections=auto gives it
SLOW_CONNECTIONS = 2000
BYTE_EVERY = 1.0  # seconds between the header bytes of a slow connection
BUDGET = 8  # header bytes a slow connection sends at most: it would stay open BUDGET seconds
OVER_CAPACITY = "gateway_connections_closed_total{over_capacity}"
HEADER_TIMEOUT = "gateway_connections_closed_total{header_timeout}"


@dataclass
class Attack:
    opened: int = 0
    closed_by_gateway: int = 0
    outlived: int = 0  # sent their whole budget without being closed: must stay 0
    failed_to_connect: int = 0


@dataclass
class Served:
    process: subprocess.Popen[bytes]
    port: int
    admin_port: int
    signing: Keyring

    def url(self, path: str) -> URL:
        target = sign_path(path, self.signing, expires_in=300)
        return URL(f"http://127.0.0.1:{self.port}{target}", encoded=True)

    def descriptors(self) -> int:
        return len(os.listdir(f"/proc/{self.process.pid}/fd"))

    async def metrics(self, session: aiohttp.ClientSession) -> dict[str, float]:
        async with session.get(f"http://127.0.0.1:{self.admin_port}/metrics") as response:
            text = await response.text()
        return {
            sample.name + "".join(f"{{{v}}}" for v in sample.labels.values()): sample.value
            for family in text_string_to_metric_families(text)
            for sample in family.samples
        }


def _gateway_exe() -> str:
    exe = shutil.which("gateway", path=os.path.dirname(sys.executable)) or shutil.which("gateway")
    assert exe is not None, "the gateway console script is not installed"
    return exe


def _limit_open_files() -> None:
    resource.setrlimit(resource.RLIMIT_NOFILE, (OPEN_FILES, OPEN_FILES))


@pytest.fixture
def enough_descriptors() -> Iterator[None]:
    """This test process holds the 2,000 slow connections: raise its own soft limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = SLOW_CONNECTIONS + 1024
    if hard != resource.RLIM_INFINITY and hard < wanted:
        pytest.skip(f"needs {wanted} open files for the slow clients; the hard limit is {hard}")
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, wanted), hard))
    yield
    resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


@pytest.fixture
def limited_gateway(tmp_path: Path, objects: Path) -> Iterator[Served]:
    """`gateway serve` with RLIMIT_NOFILE 1024: default settings, but a 2 s header timeout."""
    signing = Keyring([new_key("k1", Algorithm.ED25519, Status.ACTIVE)])
    keyring_file = tmp_path / "gateway-keyring.json"
    signing.public_export().save(keyring_file, public_only=True)
    port, admin_port = free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")}
    env.update(
        {
            "GATEWAY_ORIGIN": f"file://{objects}",
            "GATEWAY_KEYRING": str(keyring_file),
            "GATEWAY_REVOCATION_DB": str(tmp_path / "revocations.sqlite3"),
            "GATEWAY_LISTEN": f"127.0.0.1:{port}",
            "GATEWAY_ADMIN_LISTEN": f"127.0.0.1:{admin_port}",
            "GATEWAY_ACCESS_LOG": "false",
            "GATEWAY_HEADER_TIMEOUT": "2",
        }
    )
    log = tmp_path / "gateway.log"
    with log.open("wb") as stderr:
        process = subprocess.Popen(
            [_gateway_exe(), "serve"],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=stderr,
            preexec_fn=_limit_open_files,
        )
    try:
        _wait_ready(process, admin_port, log)
        yield Served(process, port, admin_port, signing)
    finally:
        process.kill()
        process.wait()


def _wait_ready(process: subprocess.Popen[bytes], admin_port: int, log: Path) -> None:
    deadline = time.monotonic() + 30
    while True:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{admin_port}/readyz", timeout=1):
                return
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"gateway did not start: {log.read_text()}") from None
            time.sleep(0.05)


async def _slow_connection(port: int, attack: Attack) -> None:
    """One slow client: a request line, then a header byte a second, never the end of it."""
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
    except OSError:
        attack.failed_to_connect += 1
        return
    attack.opened += 1
    raw = Raw(reader, writer)
    try:
        writer.write(b"GET /a.txt HTTP/1.1\r\n")
        if await raw.send_slowly(b"X" * BUDGET, every=BYTE_EVERY):
            attack.closed_by_gateway += 1
        else:
            attack.outlived += 1
    finally:
        raw.close()


def _accepted(metrics: dict[str, float]) -> float:
    """Connections the gateway has accepted: those open, and those it closed."""
    return metrics["gateway_client_connections"] + metrics[OVER_CAPACITY] + metrics[HEADER_TIMEOUT]


async def test_2000_slow_header_connections_leave_a_normal_client_its_answers(
    enough_descriptors: None, limited_gateway: Served
) -> None:
    gateway, attack = limited_gateway, Attack()
    latencies: list[float] = []
    failures: list[str] = []
    descriptors: list[int] = []
    guard = aiohttp.ClientTimeout(total=GUARD)
    fresh = aiohttp.TCPConnector(force_close=True)  # a new connection for every request
    async with aiohttp.ClientSession(connector=fresh, timeout=guard) as session:
        slow = [
            asyncio.create_task(_slow_connection(gateway.port, attack))
            for _ in range(SLOW_CONNECTIONS)
        ]
        await eventually(lambda: attack.opened + attack.failed_to_connect == SLOW_CONNECTIONS)
        async with asyncio.timeout(GUARD):  # until the gateway has accepted every one of them
            while _accepted(await gateway.metrics(session)) < attack.opened:
                pass
        # A normal client, a new connection per request, until every slow connection is gone.
        while attack.closed_by_gateway + attack.outlived < attack.opened:
            started = time.perf_counter()
            try:
                async with session.get(gateway.url("/a.txt")) as response:
                    answer = (response.status, await response.read())
                    if answer != (200, b"a\n"):
                        failures.append(repr(answer))
            except (aiohttp.ClientError, TimeoutError) as exc:
                failures.append(repr(exc))
            latencies.append(time.perf_counter() - started)
            descriptors.append(gateway.descriptors())
        await asyncio.gather(*slow)
        closed = await gateway.metrics(session)

    latencies.sort()
    print(
        f"\nduring the attack: {len(latencies)} normal requests, median "
        f"{statistics.median(latencies) * 1000:.1f} ms, p99 "
        f"{latencies[int(len(latencies) * 0.99)] * 1000:.1f} ms, max {latencies[-1] * 1000:.1f} "
        f"ms; gateway descriptors at most {max(descriptors)}; closed: "
        f"{closed[OVER_CAPACITY]:.0f} over capacity, {closed[HEADER_TIMEOUT]:.0f} at the deadline"
    )
    assert failures == []
    assert attack.failed_to_connect == 0
    assert attack.outlived == 0  # each was closed: evicted, or at its header deadline
    assert closed[OVER_CAPACITY] + closed[HEADER_TIMEOUT] >= SLOW_CONNECTIONS
    assert closed[HEADER_TIMEOUT] > 0
    assert max(descriptors) < OPEN_FILES
