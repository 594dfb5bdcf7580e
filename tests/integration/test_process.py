"""`gateway serve` as operators run it: start-up errors, signals, draining, workers."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families
from yarl import URL

from signer import Algorithm, Keyring, Status, new_key, sign_path
from tests.polling import eventually
from tests.redis_server import redis_server
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
            [gateway_exe(), "serve"],
            env=env,
            stdout=out,
            stderr=subprocess.PIPE,
            start_new_session=True,  # its own process group: `stop` ends its workers too
        )
    served = Served(process, port, admin_port, keyring, keyring_file, stdout)
    deadline = time.monotonic() + 30
    while not _healthy(admin_port, "/readyz"):
        if process.poll() is not None or time.monotonic() > deadline:
            stop(served)
            raise AssertionError(f"gateway did not start: {served.output()}")
        time.sleep(0.05)
    return served


def stop(*gateways: Served) -> None:
    """SIGKILL each gateway's process group: the supervisor, its workers, and their helpers."""
    for served in gateways:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(served.process.pid, signal.SIGKILL)
        served.process.wait()


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
    stop(served)


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
        stop(served)


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
        await eventually(lambda: len(worker_pids(served)) == 2, within=30)
        pids = worker_pids(served)
        async with aiohttp.ClientSession() as session:
            for _ in range(20):
                async with session.get(served.url("/small.txt")) as response:
                    assert (response.status, await response.read()) == (200, b"small\n")
        served.process.send_signal(signal.SIGTERM)
        assert served.process.wait(timeout=60) == 0
        assert not _any_alive(pids)
    finally:
        stop(served)


async def test_workers_do_not_outlive_a_killed_supervisor(tmp_path: Path, origin: Path) -> None:
    """Left running, they would keep serving the port beside the next supervisor's workers."""
    served = serve(tmp_path, origin, workers="2")
    try:
        pids = worker_pids(served)
        assert len(pids) == 2
        served.process.kill()
        served.process.wait()
        await eventually(lambda: not _any_alive(pids), within=30)
    finally:
        stop(served)


def _any_alive(pids: list[str]) -> bool:
    return any(Path(f"/proc/{pid}").exists() for pid in pids)


def unready_saying(served: Served, reason: str) -> bool:
    """Whether `/readyz` answers 503 with a body that matches `reason` whole."""
    status, text = admin_get(served, "/readyz")
    return status == 503 and re.fullmatch(reason, text) is not None


def worker_pids(served: Served) -> list[str]:
    """The supervisor's worker processes (multiprocessing spawns them through `spawn_main`)."""
    pid = served.process.pid
    found = []
    for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split():
        try:
            if b"spawn_main" in Path(f"/proc/{child}/cmdline").read_bytes():
                found.append(child)
        except OSError:
            continue  # exited between the listing and the read
    return found


def worker_by_index(served: Served) -> dict[int, str]:
    """Each worker's pid by its index: the process listening on the supervisor's
    `worker-N.sock` (its admin app's Unix socket)."""
    indexes = {}  # socket inode -> worker index
    for line in Path("/proc/net/unix").read_text().splitlines()[1:]:
        fields = line.split()
        if len(fields) == 8 and (match := re.search(r"/worker-(\d+)\.sock$", fields[7])):
            indexes[f"socket:[{fields[6]}]"] = int(match.group(1))
    found = {}
    for pid in worker_pids(served):
        with contextlib.suppress(OSError):
            for fd in os.listdir(f"/proc/{pid}/fd"):
                with contextlib.suppress(OSError):
                    target = os.readlink(f"/proc/{pid}/fd/{fd}")
                    if target in indexes:
                        found[indexes[target]] = pid
    return found


def admin_get(served: Served, path: str) -> tuple[int, str]:
    """Status and body of an admin endpoint (the supervisor's, with workers)."""
    url = f"http://127.0.0.1:{served.admin_port}{path}"
    try:
        with _DIRECT.open(url, timeout=10) as reply:
            return reply.status, reply.read().decode().strip()
    except urllib.error.HTTPError as error:
        with error:
            return error.code, error.read().decode().strip()


_DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # loopback, no proxy


async def test_the_supervisor_is_ready_only_while_every_worker_is(
    tmp_path: Path, origin: Path
) -> None:
    served = serve(tmp_path, origin, workers="2")
    try:
        assert admin_get(served, "/readyz") == (200, "ready: 2 workers")
        await eventually(lambda: len(worker_by_index(served)) == 2, within=30)
        # A replacement for a dead worker cannot start with this keyring: worker 1 stays
        # down (the running worker 0 keeps the keyring it loaded and stays ready).
        served.keyring_file.write_text("not a keyring")
        os.kill(int(worker_by_index(served)[1]), signal.SIGKILL)
        await eventually(lambda: admin_get(served, "/readyz")[0] == 503)
        assert admin_get(served, "/readyz") == (503, "worker 1: not answering yet")
    finally:
        stop(served)


async def test_storage_unreachable_makes_the_supervisor_unready_as_one_process_says(
    tmp_path: Path, origin: Path
) -> None:
    (tmp_path / "one").mkdir()
    (tmp_path / "fleet").mkdir()
    one = serve(tmp_path / "one", origin)
    fleet = serve(tmp_path / "fleet", origin, workers="2")
    try:
        shutil.rmtree(origin)  # LocalStore.check now fails in every process
        await eventually(lambda: admin_get(one, "/readyz")[0] == 503)
        await eventually(lambda: admin_get(fleet, "/readyz")[0] == 503)
        assert admin_get(one, "/readyz") == (503, "storage: origin_error")
        assert admin_get(fleet, "/readyz") == (503, "worker 0: storage: origin_error")
    finally:
        stop(one, fleet)


async def test_a_stale_revocation_view_makes_the_supervisor_unready_as_one_process_says(
    tmp_path: Path, origin: Path
) -> None:
    (tmp_path / "one").mkdir()
    (tmp_path / "fleet").mkdir()
    # A follower confirms a sync at least every second (XREAD blocks 1 s): 3 s is never
    # reached while Redis is up.
    with redis_server(tmp_path) as redis:
        shared = {"redis_url": redis.url, "revocation_max_staleness": "3"}
        one = serve(tmp_path / "one", origin, **shared)
        fleet = serve(tmp_path / "fleet", origin, workers="2", **shared)
        try:
            redis.stop()
            stale = r"revocations stale: last sync [0-9.]+s ago \(bound 3s\)"
            await eventually(lambda: unready_saying(one, stale), within=30)
            # Each worker goes stale on its own clock; the fleet names the first, in order.
            await eventually(lambda: unready_saying(fleet, f"worker 0: {stale}"), within=30)
        finally:
            stop(one, fleet)


async def test_supervisor_metrics_label_each_worker_and_its_counters_add_up(
    tmp_path: Path, origin: Path
) -> None:
    requests = 40
    served = serve(tmp_path, origin, workers="2")
    try:
        fresh = aiohttp.TCPConnector(force_close=True)  # a new connection, any worker, each time
        async with aiohttp.ClientSession(connector=fresh) as session:
            for _ in range(requests):
                async with session.get(served.url("/small.txt")) as response:
                    assert response.status == 200

        def answered() -> dict[str, float]:
            """`gateway_requests_total` summed by worker, from the supervisor's /metrics."""
            status, text = admin_get(served, "/metrics")
            assert status == 200
            by_worker: dict[str, float] = {}
            for family in text_string_to_metric_families(text):
                for sample in family.samples:
                    if sample.name == "gateway_requests_total":
                        worker = sample.labels["worker"]
                        by_worker[worker] = by_worker.get(worker, 0.0) + sample.value
            return by_worker

        # A request is counted once its answer is sent: wait for all of them, then compare.
        await eventually(lambda: sum(answered().values()) >= requests)
        counted = answered()
        assert sum(counted.values()) == requests
        # SO_REUSEPORT hashes each new connection to a worker: 40 all on one has odds of 2**-39.
        assert set(counted) == {"0", "1"}
        assert all(count > 0 for count in counted.values())
    finally:
        stop(served)


def test_supervisor_metrics_show_every_worker_by_its_label(tmp_path: Path, origin: Path) -> None:
    served = serve(tmp_path, origin, workers="2")
    try:
        status, text = admin_get(served, "/metrics")
        assert status == 200
        generations = {
            sample.labels["worker"]: sample.value
            for family in text_string_to_metric_families(text)
            for sample in family.samples
            if sample.name == "gateway_keyring_generation"
        }
        assert generations == {"0": 1.0, "1": 1.0}
    finally:
        stop(served)


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
        stop(served)
