"""Process control: the storage and the peers in front of it, all on 127.0.0.1.

SeaweedFS, `gateway serve` and nginx are started by the same launchers the tests use
(`tests/servers.py`), which wait until each is ready. The peers of one run, each read
through its own kind of link:

  direct     the storage itself, with SigV4 presigned URLs (the baseline);
  gateway-1  `gateway serve`, one worker, with the storage credentials;
  gateway-2  the same with two workers;
  nginx      Debian's nginx: `secure_link` checks an MD5 link, then a keep-alive `proxy_pass`
             to the storage. It cannot sign SigV4, so the bucket grants anonymous reads (the
             second SeaweedFS identity, "anonymous", may only Read:BUCKET);
  tcp-fwd    `benchmarks/tcp_forwarder.py`, splice and no HTTP: what one more loopback hop
             costs by itself, for the large object only.

With `--tls`, one more: gateway-1-tls, the one-worker gateway with a self-signed certificate
on its public listener (`tls_certificate`, `tls_key`), read over HTTPS.
"""

from __future__ import annotations

import contextlib
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from benchmarks.gateway_load.measure import BenchError
from benchmarks.gateway_load.objects import BUCKET
from tests.servers import S3Server, free_port, gateway_serve, nginx, seaweedfs, write_certificate

READY_TIMEOUT: Final = 30.0
PY_SPY_RATE: Final = 250  # samples per second
PY_SPY_ATTACH: Final = 1.0  # seconds given to py-spy to attach before the timed runs start
GATEWAY_WORKERS: Final = (1, 2)
# Settings the harness sets itself; --setting may add any other.
HARNESS_SETTINGS: Final = frozenset(
    ("origin", "s3_endpoint_url", "keyring", "listen", "admin_listen", "workers")
)


@dataclass(frozen=True)
class Peer:
    """One way to read the bucket: where wrk sends requests, and what sits in between."""

    name: str
    scheme: str  # the kind of link it takes: "direct", "gateway" or "nginx"
    base_url: str  # http://127.0.0.1:PORT
    host: str | None = None  # a Host header other than base_url's (the forwarder's)
    pid: int | None = None  # the process (tree) between wrk and the storage; None: direct


LABELS: Final = {
    "direct": "storage direct (presigned)",
    "gateway-1": "gateway, 1 worker",
    "gateway-2": "gateway, 2 workers",
    "nginx": "nginx secure_link + proxy_pass",
    "tcp-fwd": "bare TCP forwarder (splice)",
}
TLS_PEER: Final = "gateway-1-tls"
TLS_LABELS: Final = {TLS_PEER: "gateway, 1 worker, TLS"}


def tls_files(workdir: Path) -> tuple[Path, Path]:
    """A self-signed ECDSA P-256 certificate for 127.0.0.1 and its key, as an ACME client
    would leave them (PEM chain and PKCS#8 key); wrk and the checking client do not verify."""
    return write_certificate(workdir, "gateway-load")


def tls_settings(workdir: Path, settings: Mapping[str, str]) -> dict[str, str]:
    """`settings` with TLS on the public listener (the certificate made once per workdir)."""
    cert, key = workdir / "tls-cert.pem", workdir / "tls-key.pem"
    if not (cert.exists() and key.exists()):
        cert, key = tls_files(workdir)
    return {**settings, "tls_certificate": str(cert), "tls_key": str(key)}


def https_url(port: int) -> str:
    return f"https://127.0.0.1:{port}"


def storage(workdir: Path) -> contextlib.AbstractContextManager[S3Server]:
    """SeaweedFS, private except for anonymous reads of the bucket (for nginx)."""
    return seaweedfs(workdir, anonymous_read=[BUCKET])


def storage_host(s3: S3Server) -> str:
    return s3.endpoint_url.removeprefix("http://")


def gateway_settings(
    s3: S3Server, keyring_file: Path, workers: int, extra: Mapping[str, str]
) -> dict[str, str]:
    """The gateway as deployed (access log, metrics, revocation all on), in front of the bucket."""
    return {
        **extra,
        "origin": f"s3://{BUCKET}",
        "s3_endpoint_url": s3.endpoint_url,
        "keyring": str(keyring_file),
        "workers": str(workers),
    }


def nginx_config(s3: S3Server, secret: str) -> tuple[str, str]:
    """(http, server) configuration of the nginx peer: the fair proxy of TEST-SERVERS.md."""
    host = storage_host(s3)
    http = f"    upstream storage {{ server {host}; keepalive 64; }}"
    server = f"""\
        location /{BUCKET}/ {{
            secure_link $arg_md5,$arg_expires;
            secure_link_md5 "$secure_link_expires$uri {secret}";
            if ($secure_link = "") {{ return 403; }}
            if ($secure_link = "0") {{ return 410; }}
            proxy_pass http://storage$uri;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host {host};
            proxy_max_temp_file_size 0;
        }}"""
    return http, server


@contextlib.contextmanager
def forwarder(s3: S3Server) -> Iterator[tuple[int, int]]:
    """`benchmarks/tcp_forwarder.py` in front of the storage; (pid, port) once it accepts."""
    port = free_port()
    command = [
        sys.executable,
        str(Path(__file__).parent.parent / "tcp_forwarder.py"),
        f"--port={port}",
        f"--to={storage_host(s3)}",
    ]
    process = subprocess.Popen(command, stdin=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.monotonic() + READY_TIMEOUT
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise BenchError("the TCP forwarder did not start") from None
                time.sleep(0.02)
        yield process.pid, port
    finally:
        process.terminate()
        process.wait()


@contextlib.contextmanager
def peers(
    workdir: Path,
    s3: S3Server,
    keyring_file: Path,
    nginx_secret: str,
    extra: Mapping[str, str],
    *,
    tls: bool = False,
) -> Iterator[dict[str, Peer]]:
    """Every peer, started and ready, in report order; all stopped on the way out."""
    with contextlib.ExitStack() as stack:
        found = {"direct": Peer("direct", "direct", s3.endpoint_url)}
        for workers in GATEWAY_WORKERS:
            name = f"gateway-{workers}"
            gateway = stack.enter_context(
                gateway_serve(
                    workdir,
                    gateway_settings(s3, keyring_file, workers, extra),
                    env=s3.env(),
                    name=name,
                )
            )
            found[name] = Peer(name, "gateway", gateway.url(""), pid=gateway.pid)
        if tls:
            settings = tls_settings(workdir, gateway_settings(s3, keyring_file, 1, extra))
            gateway = stack.enter_context(
                gateway_serve(workdir, settings, env=s3.env(), name=TLS_PEER)
            )
            found[TLS_PEER] = Peer(TLS_PEER, "gateway", https_url(gateway.port), pid=gateway.pid)
        http, server = nginx_config(s3, nginx_secret)
        proxy = stack.enter_context(nginx(workdir, server, http=http))
        found["nginx"] = Peer("nginx", "nginx", proxy.url(""), pid=proxy.pid)
        pid, port = stack.enter_context(forwarder(s3))
        found["tcp-fwd"] = Peer(
            "tcp-fwd", "direct", f"http://127.0.0.1:{port}", host=storage_host(s3), pid=pid
        )
        yield found


@contextlib.contextmanager
def py_spy(pid: int, output: Path | None, *, subprocesses: bool = False) -> Iterator[None]:
    """With an `output` file, record process `pid` with py-spy around the block."""
    if output is None:
        yield
        return
    exe = shutil.which("py-spy", path=str(Path(sys.executable).parent)) or shutil.which("py-spy")
    if exe is None:
        raise BenchError("--profile needs py-spy: pip install py-spy")
    command = [exe, "record", "--pid", str(pid), "--rate", str(PY_SPY_RATE)]
    command += ["--format", "raw", "--output", str(output), "--nonblocking"]
    if subprocesses:
        command.append("--subprocesses")
    recorder = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    time.sleep(PY_SPY_ATTACH)
    try:
        yield
    finally:
        recorder.send_signal(signal.SIGINT)
        try:
            _, errors = recorder.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            recorder.kill()
            _, errors = recorder.communicate()
        if not output.exists():
            message = errors.decode(errors="replace").strip()
            raise BenchError(f"py-spy wrote no profile: {message}")
