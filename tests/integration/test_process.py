"""`gateway serve` as operators run it: start-up errors, signals, draining, workers."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from yarl import URL

from signer import Algorithm, Keyring, Status, new_key, sign_path
from tests.polling import eventually
from tests.servers import free_port

pytestmark = pytest.mark.integration

BIG = 32 * 1024 * 1024


def gateway_exe() -> str:
    exe = shutil.which("gateway", path=os.path.dirname(sys.executable)) or shutil.which("gateway")
    assert exe is not None, "the gateway console script is not installed"
    return exe


@dataclass
class Served:
    process: subprocess.Popen[bytes]
    port: int
    admin_port: int
    keyring: Keyring
    keyring_file: Path
    stdout: Path | None = None  # where the access log goes

    def url(self, path: str, **options: object) -> URL:
        target = sign_path(path, self.keyring, expires_in=300, **options)  # type: ignore[arg-type]
        return URL(f"http://127.0.0.1:{self.port}{target}", encoded=True)

    def accepting(self) -> bool:
        with socket.socket() as probe:
            probe.settimeout(0.5)
            return probe.connect_ex(("127.0.0.1", self.port)) == 0

    def output(self) -> str:
        self.process.wait(timeout=30)
        assert self.process.stderr is not None
        return self.process.stderr.read().decode()

    def access_log(self) -> list[dict[str, Any]]:
        """The access log lines written so far, parsed."""
        assert self.stdout is not None
        lines = self.stdout.read_text().splitlines()
        return [json.loads(line) for line in lines if line.startswith("{")]


@pytest.fixture
def origin(tmp_path: Path) -> Path:
    root = tmp_path / "objects"
    root.mkdir()
    (root / "small.txt").write_bytes(b"small\n")
    with (root / "big.bin").open("wb") as handle:
        handle.truncate(BIG)
    return root


def serve(tmp_path: Path, origin: Path | str, **extra: str) -> Served:
    """`gateway serve` for a local directory, or for any origin URL given as a string."""
    keyring = Keyring([new_key("k1", Algorithm.ED25519, Status.ACTIVE)])
    keyring_file = tmp_path / "gateway-keyring.json"
    keyring.public_export().save(keyring_file, public_only=True)
    port, admin_port = free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")}
    env.update(
        {
            "GATEWAY_ORIGIN": origin if isinstance(origin, str) else f"file://{origin}",
            "GATEWAY_KEYRING": str(keyring_file),
            "GATEWAY_REVOCATION_DB": str(keyring_file.parent / "revocations.sqlite3"),
            "GATEWAY_LISTEN": f"127.0.0.1:{port}",
            "GATEWAY_ADMIN_LISTEN": f"127.0.0.1:{admin_port}",
            "GATEWAY_CHUNK_SIZE": "65536",
        }
    )
    env.update({f"GATEWAY_{k.upper()}": v for k, v in extra.items()})
    stdout = tmp_path / f"gateway-{port}.out"
    with stdout.open("wb") as out:
        process = subprocess.Popen(
            [gateway_exe(), "serve"], env=env, stdout=out, stderr=subprocess.PIPE
        )
    served = Served(process, port, admin_port, keyring, keyring_file, stdout)
    deadline = time.monotonic() + 30
    while not _healthy(admin_port, "/readyz"):
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            raise AssertionError(f"gateway did not start: {served.output()}")
        time.sleep(0.05)
    return served


def _healthy(port: int, path: str) -> bool:
    import urllib.request

    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=1) as reply:
            return bool(reply.status == 200)
    except OSError:
        return False


@pytest.fixture
def gateway(tmp_path: Path, origin: Path) -> Iterator[Served]:
    served = serve(tmp_path, origin)
    yield served
    if served.process.poll() is None:
        served.process.kill()
        served.process.wait()


# --- start-up errors -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("env", "message"),
    [
        (
            {"GATEWAY_ORIGIN": "ftp://x"},
            "GATEWAY_ORIGIN: 'ftp://x' must start with s3:// or file://",
        ),
        ({"GATEWAY_LISTEN": "nonsense"}, "GATEWAY_LISTEN: 'nonsense' must be host:port"),
        ({"GATEWAY_WORKERS": "0"}, "GATEWAY_WORKERS: '0' must be an integer from 1 to 256"),
        ({"GATEWAY_TIMEOUT": "5"}, "GATEWAY_TIMEOUT: not a gateway setting"),
        ({"GATEWAY_KEYRING": "/nonexistent/keys.json"}, "cannot read"),
        ({"GATEWAY_ORIGIN": "file:///nonexistent/objects"}, "does not exist"),
        ({"GATEWAY_KEYRING": "{private}"}, "private key(s) 'k1', which belong on the signing"),
    ],
)
def test_bad_settings_fail_at_start_up_naming_the_setting(
    tmp_path: Path, origin: Path, env: dict[str, str], message: str
) -> None:
    keyring_file = tmp_path / "k.json"
    signing = Keyring([new_key("k1", Algorithm.ED25519, Status.ACTIVE)])
    signing.public_export().save(keyring_file, public_only=True)
    private_file = tmp_path / "signing.json"
    signing.save(private_file)
    base = {k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")}
    base.update(
        {
            "GATEWAY_ORIGIN": f"file://{origin}",
            "GATEWAY_KEYRING": str(keyring_file),
            "GATEWAY_REVOCATION_DB": str(keyring_file.parent / "revocations.sqlite3"),
            "GATEWAY_LISTEN": f"127.0.0.1:{free_port()}",
            "GATEWAY_ADMIN_LISTEN": f"127.0.0.1:{free_port()}",
            **{k: v.format(private=private_file) for k, v in env.items()},
        }
    )
    result = subprocess.run(
        [gateway_exe(), "serve"], env=base, capture_output=True, timeout=60, check=False
    )
    assert result.returncode == 2
    assert message in result.stderr.decode()
    assert "Traceback" not in result.stderr.decode()


def test_help_shows_examples() -> None:
    result = subprocess.run(
        [gateway_exe(), "serve", "--help"], capture_output=True, text=True, check=True
    )
    assert "examples:" in result.stdout
    assert "GATEWAY_ORIGIN" in result.stdout


# --- signals ---------------------------------------------------------------------------------


async def test_sigterm_stops_accepting_and_lets_streams_finish(gateway: Served) -> None:
    async with (
        aiohttp.ClientSession() as session,
        session.get(gateway.url("/big.bin")) as response,
    ):
        assert response.status == 200
        received = len(await response.content.readexactly(1024 * 1024))
        gateway.process.send_signal(signal.SIGTERM)
        await eventually(lambda: not gateway.accepting())
        while chunk := await response.content.readany():
            received += len(chunk)
    assert received == BIG
    assert gateway.process.wait(timeout=30) == 0


async def test_streams_still_running_at_the_deadline_are_cut(tmp_path: Path, origin: Path) -> None:
    served = serve(tmp_path, origin, shutdown_grace="0.5")
    try:
        async with (
            aiohttp.ClientSession() as session,
            session.get(served.url("/big.bin")) as response,
        ):
            await response.content.readexactly(1024 * 1024)
            served.process.send_signal(signal.SIGTERM)
            assert served.process.wait(timeout=30) == 0  # the stalled stream did not hold it
            with pytest.raises(aiohttp.ClientPayloadError):
                await response.read()
    finally:
        if served.process.poll() is None:
            served.process.kill()


async def test_sighup_reloads_the_keyring(gateway: Served) -> None:
    rotated = gateway.keyring.with_key(new_key("k2", Algorithm.ED25519, Status.ACTIVE))
    new_url = Served(
        gateway.process, gateway.port, gateway.admin_port, rotated, gateway.keyring_file
    ).url("/small.txt")
    async with aiohttp.ClientSession() as session:
        async with session.get(new_url) as response:
            assert response.status == 403
        rotated.public_export().save(gateway.keyring_file, public_only=True)
        gateway.process.send_signal(signal.SIGHUP)

        async def status() -> int:
            async with session.get(new_url) as response:
                return response.status

        deadline = time.monotonic() + 10
        while await status() != 200:
            assert time.monotonic() < deadline, "the new key was never accepted"
        async with session.get(gateway.url("/small.txt")) as response:
            assert response.status == 200  # the old key is now 'verify': still accepted


# --- workers ---------------------------------------------------------------------------------


async def test_several_workers_share_the_port_and_stop_together(
    tmp_path: Path, origin: Path
) -> None:
    served = serve(tmp_path, origin, workers="2")
    try:
        children = Path(f"/proc/{served.process.pid}/task/{served.process.pid}/children")

        def workers() -> list[str]:
            found = []
            for pid in children.read_text().split():
                try:
                    if b"spawn_main" in Path(f"/proc/{pid}/cmdline").read_bytes():
                        found.append(pid)
                except OSError:
                    continue  # exited between the listing and the read
            return found

        await eventually(lambda: len(workers()) == 2, within=30)
        pids = workers()
        async with aiohttp.ClientSession() as session:
            for _ in range(20):
                async with session.get(served.url("/small.txt")) as response:
                    assert (response.status, await response.read()) == (200, b"small\n")
        served.process.send_signal(signal.SIGTERM)
        assert served.process.wait(timeout=60) == 0
        assert not _any_alive(pids)
    finally:
        if served.process.poll() is None:
            served.process.kill()


def _any_alive(pids: list[str]) -> bool:
    return any(Path(f"/proc/{pid}").exists() for pid in pids)


async def test_a_revocation_through_the_supervisor_reaches_every_worker(
    tmp_path: Path, origin: Path
) -> None:
    served = serve(tmp_path, origin, workers="2", admin_token="supervisor-test-bearer")
    try:
        link = served.url("/small.txt")
        admin = f"http://127.0.0.1:{served.admin_port}/admin/revocations"
        fresh = aiohttp.TCPConnector(force_close=True)  # a new connection, any worker, each time
        async with aiohttp.ClientSession(connector=fresh) as session:
            async with session.post(
                admin,
                json={"url": str(link)},
                headers={"Authorization": "Bearer supervisor-test-bearer"},
            ) as answer:
                assert answer.status == 201

            async def statuses() -> set[int]:
                seen = set()
                for _ in range(20):
                    async with session.get(link) as response:
                        seen.add(response.status)
                return seen

            async with asyncio.timeout(30):
                while await statuses() != {403}:
                    pass
    finally:
        served.process.kill()
        served.process.wait()
