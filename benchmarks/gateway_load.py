"""Gateway load test: the real gateway in front of real storage, next to the storage itself.

    python -m benchmarks.gateway_load [--quick] [--workers N] [--setting NAME=VALUE]
                                      [--profile DIR]

Starts a SeaweedFS S3 server and the gateway (`gateway serve`, a separate process) on
127.0.0.1, uploads test objects, and loads both from this process with one aiohttp client on
uvloop. The baseline ("direct") reads the same storage with botocore presigned URLs; the
gateway is read with HMAC-SHA256 signed links; both kinds of URL are made before timing.

  (a) requests/s for 4 KiB objects: closed loop, 32 connections, 3000 requests per path
      (--quick 500) in rounds alternating direct/gateway;
  (b) MiB/s for a 256 MiB object (--quick 64 MiB): sequential downloads, direct and gateway
      alternating, body counted and discarded. A third path puts a bare TCP forwarder
      (`benchmarks/tcp_forwarder.py`: splice, no HTTP, no checks) where the gateway goes: what
      one more loopback hop costs here by itself, the ceiling for any proxy's ratio;
  (c) the gateway's peak RSS while streaming an object 4x larger than (b), next to the same
      for the (b) object, each in a fresh gateway process (VmHWM from /proc/PID/status, and
      VmRSS sampled during the transfer): it must not grow with the object;
  (d) latency added by the gateway at a fixed open-loop rate of 200 req/s for 10 s (--quick
      5 s): p50/p99 through the gateway minus p50/p99 direct.

Next to (a) and (b) it prints the CPU time each party used (this client, the storage, the
gateway) per request or per GiB, and how many cores were busy. The client shares the cores
with the gateway and the storage; direct and gateway runs use the same client, so the ratios
are fair, but the absolute figures are lower than a separate load host would see.

`--workers N` runs the gateway with N workers (default 1); `--setting NAME=VALUE` passes
another gateway setting (`GATEWAY_NAME`, see `gateway settings`), e.g. chunk_size=1048576.

Targets (2-core machine, one worker): (a) >= 0.5x direct, (b) >= 0.9x direct, (c) flat. The
exit status is 0 when every target passes, 1 when one fails, 2 when the harness failed.
`--profile DIR` also records the gateway with py-spy (`pip install py-spy`) during the timed
gateway runs of (a) and (b), as collapsed stacks in DIR; sampling costs CPU, so the figures of
such a run are a little lower.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import itertools
import math
import os
import platform
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass, field
from importlib.metadata import version
from pathlib import Path

import aiohttp
import uvloop
from yarl import URL

from signer import Algorithm, Keyring, Status, new_key, sign_path
from tests.servers import S3Client, S3Server, free_port, start_seaweedfs

KiB = 1024
MiB = 1024 * KiB
GiB = 1024 * MiB
BUCKET = "bench"
SMALL_SIZE = 4 * KiB
SMALL_OBJECTS = 64  # distinct 4 KiB objects; requests cycle over them
PART_SIZE = 16 * MiB  # multipart upload part: the most held in memory while uploading
CONCURRENCY = 32
SMALL_ROUNDS = 3  # (a) alternates direct and gateway rounds, against drift in a shared host
PATHS = ("direct", "gateway")
CLIENT_READ_BUFSIZE = 1 * MiB
LINK_LIFETIME = 3600
READY_TIMEOUT = 30.0
STOP_TIMEOUT = 45.0  # the gateway drains for up to shutdown_grace (30 s) on SIGTERM
REQUEST_TIMEOUT = 300.0
RSS_SAMPLE_INTERVAL = 0.02
CHECK_EVERY = 50  # compare every 50th small body with the uploaded bytes
PY_SPY_RATE = 250  # samples per second
PY_SPY_ATTACH = 1.0  # seconds given to py-spy to attach before the timed run starts
# Settings the harness sets itself; --setting may add any other.
HARNESS_SETTINGS = frozenset(
    ("origin", "s3_endpoint_url", "keyring", "listen", "admin_listen", "workers")
)

SMALL_RATIO_TARGET = 0.5
LARGE_RATIO_TARGET = 0.9
# "Flat": streaming a 4x larger object may raise the peak RSS by at most this much.
RSS_SLACK_FRACTION = 0.10
RSS_SLACK_MIN = 8 * MiB


@dataclass(frozen=True)
class Profile:
    name: str
    small_requests: int
    large_size: int
    large_downloads: int
    rate: float
    latency_seconds: float

    @property
    def huge_size(self) -> int:
        return 4 * self.large_size

    @property
    def latency_requests(self) -> int:
        return round(self.rate * self.latency_seconds)


FULL = Profile("full", 3000, 256 * MiB, 6, 200.0, 10.0)
QUICK = Profile("quick", 500, 64 * MiB, 3, 200.0, 5.0)


class BenchError(RuntimeError):
    """The harness could not measure: a server did not start or answered wrongly."""


# Setup: storage, objects, keys, links.


@dataclass(frozen=True)
class StoredObject:
    key: str
    size: int
    sha256: str


@dataclass(frozen=True)
class Options:
    """What the command line chose."""

    profile: Profile
    workers: int
    profile_dir: Path | None  # --profile: py-spy output
    settings: dict[str, str]  # --setting NAME=VALUE: extra GATEWAY_* variables


@dataclass
class Bench:
    """Everything the measurements need, prepared before any timing."""

    s3: S3Server
    workdir: Path
    options: Options
    keyring: Keyring
    keyring_file: Path
    small: list[StoredObject]
    small_bodies: dict[str, bytes]
    large: StoredObject
    huge: StoredObject

    @property
    def profile(self) -> Profile:
        return self.options.profile

    @property
    def storage_pid(self) -> int:
        assert self.s3.process is not None
        return self.s3.process.pid

    def signed(self, gateway: Gateway, objects: Sequence[StoredObject]) -> list[URL]:
        """Gateway URLs: one HMAC-signed link per request."""
        return [
            gateway.url(sign_path("/" + o.key, self.keyring, expires_in=LINK_LIFETIME))
            for o in objects
        ]

    def presigned(self, objects: Sequence[StoredObject]) -> list[URL]:
        """Direct URLs: one botocore presigned GET per request."""
        client = self.s3.client()
        return [
            URL(
                client.generate_presigned_url(
                    "get_object", Params={"Bucket": BUCKET, "Key": o.key}, ExpiresIn=LINK_LIFETIME
                ),
                encoded=True,
            )
            for o in objects
        ]

    def urls(self, path: str, gateway: Gateway, objects: Sequence[StoredObject]) -> list[URL]:
        """URLs for `objects` through `path` ("direct" or "gateway")."""
        return self.presigned(objects) if path == "direct" else self.signed(gateway, objects)

    def small_cycle(self, count: int) -> list[StoredObject]:
        return [self.small[i % len(self.small)] for i in range(count)]


def prepare(s3: S3Server, workdir: Path, options: Options) -> Bench:
    """Bucket, objects (4 KiB ones, the (b) object and the 4x one) and the gateway keyring."""
    profile = options.profile
    client = s3.client()
    client.create_bucket(Bucket=BUCKET)
    small_bodies: dict[str, bytes] = {}
    small: list[StoredObject] = []
    for i in range(SMALL_OBJECTS):
        key = f"obj/4k-{i}.bin"
        body = os.urandom(SMALL_SIZE)
        client.put_object(Bucket=BUCKET, Key=key, Body=body)
        small_bodies[key] = body
        small.append(StoredObject(key, SMALL_SIZE, hashlib.sha256(body).hexdigest()))
    large = upload_random(client, "obj/large.bin", profile.large_size)
    huge = upload_random(client, "obj/huge.bin", profile.huge_size)
    keyring = Keyring([new_key("bench", Algorithm.HMAC_SHA256, Status.ACTIVE)])
    keyring_file = workdir / "gateway-keyring.json"
    keyring.public_export().save(keyring_file, public_only=True)
    return Bench(
        s3=s3,
        workdir=workdir,
        options=options,
        keyring=keyring,
        keyring_file=keyring_file,
        small=small,
        small_bodies=small_bodies,
        large=large,
        huge=huge,
    )


def upload_random(client: S3Client, key: str, size: int) -> StoredObject:
    """Upload `size` random bytes by multipart, one part in memory at a time."""
    digest = hashlib.sha256()
    upload_id = client.create_multipart_upload(Bucket=BUCKET, Key=key)["UploadId"]
    parts = []
    try:
        for number, offset in enumerate(range(0, size, PART_SIZE), start=1):
            data = os.urandom(min(PART_SIZE, size - offset))
            digest.update(data)
            answer = client.upload_part(
                Bucket=BUCKET, Key=key, UploadId=upload_id, PartNumber=number, Body=data
            )
            parts.append({"PartNumber": number, "ETag": answer["ETag"]})
        client.complete_multipart_upload(
            Bucket=BUCKET, Key=key, UploadId=upload_id, MultipartUpload={"Parts": parts}
        )
    except BaseException:
        client.abort_multipart_upload(Bucket=BUCKET, Key=key, UploadId=upload_id)
        raise
    return StoredObject(key, size, digest.hexdigest())


# The gateway process.


@dataclass
class Gateway:
    process: subprocess.Popen[bytes]
    port: int
    admin_port: int
    log_path: Path

    @property
    def pid(self) -> int:
        return self.process.pid

    def url(self, target: str) -> URL:
        """`target` ("path?query") is sent byte for byte."""
        return URL(f"http://127.0.0.1:{self.port}{target}", encoded=True)

    def log_tail(self, lines: int = 30) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        return ""

    def stop(self) -> None:
        """SIGTERM, wait for the drain; SIGKILL its process group if it does not exit."""
        if self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()


@dataclass
class Forwarder:
    """`benchmarks/tcp_forwarder.py` in front of storage, for the (b) reference path."""

    process: subprocess.Popen[bytes]
    port: int

    @property
    def pid(self) -> int:
        return self.process.pid

    def url(self, direct: URL) -> tuple[URL, dict[str, str]]:
        """A presigned URL sent to the forwarder, with the Host header it was signed for."""
        via = URL(f"http://127.0.0.1:{self.port}{direct.raw_path_qs}", encoded=True)
        return via, {"Host": f"{direct.raw_host}:{direct.port}"}


@contextlib.contextmanager
def running_forwarder(bench: Bench) -> Iterator[Forwarder]:
    port = free_port()
    storage = URL(bench.s3.endpoint_url)
    command = [
        sys.executable,
        str(Path(__file__).with_name("tcp_forwarder.py")),
        f"--port={port}",
        f"--to={storage.raw_host}:{storage.port}",
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
        yield Forwarder(process, port)
    finally:
        process.terminate()
        process.wait()


def gateway_command() -> list[str]:
    script = Path(sys.executable).parent / "gateway"
    if script.exists():
        return [str(script), "serve"]
    return [sys.executable, "-m", "gateway.cli", "serve"]


def launch_gateway(bench: Bench, name: str) -> Gateway:
    port = free_port()
    admin_port = free_port()
    while admin_port == port:
        admin_port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")}
    env.update(bench.s3.env())
    env.update(
        {
            "GATEWAY_ORIGIN": f"s3://{BUCKET}",
            "GATEWAY_S3_ENDPOINT_URL": bench.s3.endpoint_url,
            "GATEWAY_KEYRING": str(bench.keyring_file),
            "GATEWAY_REVOCATION_DB": str(bench.keyring_file.parent / "revocations.sqlite3"),
            "GATEWAY_LISTEN": f"127.0.0.1:{port}",
            "GATEWAY_ADMIN_LISTEN": f"127.0.0.1:{admin_port}",
            "GATEWAY_ACCESS_LOG": "false",
            "GATEWAY_WORKERS": str(bench.options.workers),
        }
    )
    env.update({f"GATEWAY_{name.upper()}": v for name, v in bench.options.settings.items()})
    log_path = bench.workdir / f"gateway-{name}.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            gateway_command(),
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    return Gateway(process, port, admin_port, log_path)


async def wait_ready(gateway: Gateway, bench: Bench, session: aiohttp.ClientSession) -> None:
    """Until /healthz answers 200 and then a signed GET through the public port succeeds."""
    deadline = time.monotonic() + READY_TIMEOUT
    health = URL(f"http://127.0.0.1:{gateway.admin_port}/healthz")
    (probe,) = bench.signed(gateway, bench.small[:1])
    for url in (health, probe):
        while True:
            if gateway.process.poll() is not None:
                raise BenchError(
                    f"gateway exited with {gateway.process.returncode}:\n{gateway.log_tail()}"
                )
            with contextlib.suppress(aiohttp.ClientError, OSError):
                async with session.get(url) as response:
                    await response.read()
                    if response.status == 200:
                        break
            if time.monotonic() > deadline:
                raise BenchError(
                    f"gateway not ready within {READY_TIMEOUT:.0f} s:\n{gateway.log_tail()}"
                )
            await asyncio.sleep(0.05)


@contextlib.asynccontextmanager
async def running_gateway(bench: Bench, name: str) -> AsyncIterator[Gateway]:
    gateway = launch_gateway(bench, name)
    try:
        async with aiohttp.ClientSession() as session:
            await wait_ready(gateway, bench, session)
        yield gateway
    except Exception as exc:
        if not isinstance(exc, BenchError):  # BenchError messages carry the log already
            print(f"gateway log ({name}), last lines:\n{gateway.log_tail()}", file=sys.stderr)
        raise
    finally:
        gateway.stop()


@contextlib.contextmanager
def py_spy(bench: Bench, gateway: Gateway, name: str, *, enabled: bool = True) -> Iterator[None]:
    """With --profile, record the gateway (and its workers) with py-spy around the block."""
    output_dir = bench.options.profile_dir
    if output_dir is None or not enabled:
        yield
        return
    exe = shutil.which("py-spy", path=str(Path(sys.executable).parent)) or shutil.which("py-spy")
    if exe is None:
        raise BenchError("--profile needs py-spy: pip install py-spy")
    output = output_dir / f"gateway-{name}.txt"
    command = [exe, "record", "--pid", str(gateway.pid), "--rate", str(PY_SPY_RATE)]
    command += ["--format", "raw", "--output", str(output), "--nonblocking"]
    if bench.options.workers > 1:
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


# Process memory and CPU time from /proc.


def _parent_pid(pid: int) -> int | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return int(stat.rpartition(")")[2].split()[1])  # the field after the state


def process_tree(root: int) -> list[int]:
    """`root` and all its descendants (the supervisor and its workers)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and (parent := _parent_pid(int(entry.name))) is not None:
            children.setdefault(parent, []).append(int(entry.name))
    found, pending = [], [root]
    while pending:
        pid = pending.pop()
        found.append(pid)
        pending.extend(children.get(pid, ()))
    return found


def cpu_seconds(pids: Sequence[int]) -> float:
    """CPU seconds run so far by the live threads of `pids`, from schedstat (ns resolution;
    /proc/PID/stat counts in 10 ms ticks, too coarse for the short --quick rounds)."""
    total = 0
    for pid in pids:
        with contextlib.suppress(OSError):
            for task in Path(f"/proc/{pid}/task").iterdir():
                with contextlib.suppress(OSError, ValueError, IndexError):
                    total += int((task / "schedstat").read_text().split()[0])
    return total / 1e9


def status_bytes(pid: int, name: str) -> int:
    """A `kB` field of /proc/PID/status (VmRSS, VmHWM) in bytes; 0 if the process is gone."""
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return 0
    for line in text.splitlines():
        if line.startswith(name + ":"):
            return int(line.split()[1]) * KiB
    return 0


def peak_rss(root: int) -> int:
    """The largest VmHWM of the gateway's processes (with workers, a stream lands on one)."""
    return max(status_bytes(pid, "VmHWM") for pid in process_tree(root))


class RssSampler:
    """Samples the largest VmRSS of the gateway's processes in the background."""

    def __init__(self, root: int) -> None:
        self.pids = process_tree(root)
        self.peak = 0
        self._task: asyncio.Task[None] | None = None

    async def _run(self) -> None:
        while True:
            self.peak = max(self.peak, *(status_bytes(pid, "VmRSS") for pid in self.pids))
            await asyncio.sleep(RSS_SAMPLE_INTERVAL)

    async def __aenter__(self) -> RssSampler:
        self._task = asyncio.create_task(self._run())
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._task is not None
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task


@dataclass(frozen=True)
class Cpu:
    """CPU seconds each party used over some wall-clock seconds."""

    client: float = 0.0
    storage: float = 0.0
    gateway: float = 0.0
    wall: float = 0.0

    def __add__(self, other: Cpu) -> Cpu:
        return Cpu(
            self.client + other.client,
            self.storage + other.storage,
            self.gateway + other.gateway,
            self.wall + other.wall,
        )

    @property
    def total(self) -> float:
        return self.client + self.storage + self.gateway

    @property
    def busy_cores(self) -> float:
        return self.total / self.wall if self.wall else 0.0


class CpuMeter:
    """Everyone's CPU time and the wall clock from now; `elapsed()` is the usage since then.

    The wall clock starts after the CPU times are read and stops before they are read again,
    so reading /proc is never timed.
    """

    def __init__(self, bench: Bench, gateway: Gateway | Forwarder) -> None:
        self._storage = process_tree(bench.storage_pid)
        self._gateway = process_tree(gateway.pid)
        self._cpu = self._cpu_now()
        self._wall = time.perf_counter()

    def _cpu_now(self) -> tuple[float, float, float]:
        return time.process_time(), cpu_seconds(self._storage), cpu_seconds(self._gateway)

    def elapsed(self) -> Cpu:
        wall = time.perf_counter() - self._wall
        client, storage, gateway = (b - a for a, b in zip(self._cpu, self._cpu_now(), strict=True))
        return Cpu(client, storage, gateway, wall)


# The load client.


def client_session() -> aiohttp.ClientSession:
    """The one client configuration, used for direct and gateway runs alike."""
    return aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=CONCURRENCY),
        timeout=aiohttp.ClientTimeout(total=REQUEST_TIMEOUT),
        auto_decompress=False,
        read_bufsize=CLIENT_READ_BUFSIZE,
    )


@dataclass
class Checker:
    """Counts wrong answers; compares whole bodies on a sample of small requests."""

    bodies: dict[str, bytes]
    errors: list[str] = field(default_factory=list)
    compared: int = 0

    def small(self, index: int, obj: StoredObject, status: int, body: bytes) -> None:
        if status != 200 or len(body) != obj.size:
            self.errors.append(f"{obj.key}: status {status}, {len(body)} bytes")
        elif index % CHECK_EVERY == 0:
            self.compared += 1
            if body != self.bodies[obj.key]:
                self.errors.append(f"{obj.key}: body differs from the uploaded one")


async def get_small(session: aiohttp.ClientSession, url: URL) -> tuple[int, bytes]:
    async with session.get(url) as response:
        return response.status, await response.read()


async def closed_loop(
    session: aiohttp.ClientSession,
    urls: Sequence[URL],
    objects: Sequence[StoredObject],
    checker: Checker,
) -> None:
    """GET every url, CONCURRENCY requests in flight at all times."""
    indexes = iter(range(len(urls)))

    async def worker() -> None:
        for i in indexes:
            status, body = await get_small(session, urls[i])
            checker.small(i, objects[i], status, body)

    await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))


async def open_loop(
    session: aiohttp.ClientSession,
    urls: Sequence[URL],
    objects: Sequence[StoredObject],
    rate: float,
    checker: Checker,
) -> list[float]:
    """Send at a fixed rate whatever the answers; latency from the *intended* send time.

    Times come from perf_counter: uvloop's loop.time() has millisecond resolution.
    """
    start = time.perf_counter() + 0.05

    async def one(i: int, scheduled: float) -> float:
        status, body = await get_small(session, urls[i])
        checker.small(i, objects[i], status, body)
        return time.perf_counter() - scheduled

    tasks = []
    for i in range(len(urls)):
        scheduled = start + i / rate
        delay = scheduled - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one(i, scheduled)))
    return list(await asyncio.gather(*tasks))


async def download(
    session: aiohttp.ClientSession,
    url: URL,
    obj: StoredObject,
    *,
    verify: bool = False,
    headers: dict[str, str] | None = None,
) -> int:
    """Stream one object, discarding the body; bytes received. `verify` checks its SHA-256."""
    digest = hashlib.sha256() if verify else None
    received = 0
    async with session.get(url, headers=headers) as response:
        if response.status != 200:
            raise BenchError(f"GET {obj.key}: status {response.status}")
        async for chunk in response.content.iter_any():
            received += len(chunk)
            if digest is not None:
                digest.update(chunk)
    if received != obj.size:
        raise BenchError(f"GET {obj.key}: {received} of {obj.size} bytes")
    if digest is not None and digest.hexdigest() != obj.sha256:
        raise BenchError(f"GET {obj.key}: SHA-256 differs from the uploaded object")
    return received


# Measurements.


@dataclass(frozen=True)
class Side:
    """One path's figure (req/s or MiB/s), the work done (requests or bytes) and its CPU."""

    rate: float
    work: float
    cpu: Cpu


@dataclass(frozen=True)
class Pair:
    direct: Side
    gateway: Side
    forwarder: Side | None = None  # (b) only: the bare TCP forwarder in the gateway's place

    @property
    def forwarder_ratio(self) -> float:
        if self.forwarder is None or not self.direct.rate:
            return math.nan
        return self.forwarder.rate / self.direct.rate

    @property
    def ratio(self) -> float:
        return self.gateway.rate / self.direct.rate if self.direct.rate else math.nan


@dataclass(frozen=True)
class Latencies:
    p50: float
    p99: float


@dataclass(frozen=True)
class Memory:
    """A fresh gateway streaming one object: VmHWM before and after, largest sampled VmRSS."""

    idle_hwm: int
    peak_hwm: int
    sampled_rss: int


@dataclass
class Results:
    small: Pair | None = None
    large: Pair | None = None
    latency: tuple[Latencies, Latencies] | None = None  # direct, gateway
    memory: tuple[Memory, Memory] | None = None  # (b) object, 4x object
    checker: Checker | None = None


def percentile(values: Sequence[float], p: float) -> float:
    """Nearest-rank percentile."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)]


async def measure_small(bench: Bench, gateway: Gateway, checker: Checker) -> Pair:
    """(a): a warm-up per path, then the request count per path in alternating rounds."""
    count = bench.profile.small_requests
    objects, warm = bench.small_cycle(count), bench.small_cycle(4 * CONCURRENCY)
    urls = {path: bench.urls(path, gateway, objects) for path in PATHS}
    warm_urls = {path: bench.urls(path, gateway, warm) for path in PATHS}
    bounds = [count * i // SMALL_ROUNDS for i in range(SMALL_ROUNDS + 1)]
    totals = {path: Cpu() for path in PATHS}
    async with client_session() as direct, client_session() as through:
        sessions = {"direct": direct, "gateway": through}
        for path in PATHS:
            await closed_loop(sessions[path], warm_urls[path], warm, checker)
        with py_spy(bench, gateway, "a-small"):
            for start, end in itertools.pairwise(bounds):
                for path in PATHS:
                    meter = CpuMeter(bench, gateway)
                    await closed_loop(
                        sessions[path], urls[path][start:end], objects[start:end], checker
                    )
                    totals[path] += meter.elapsed()
    direct_side, gateway_side = (Side(count / totals[p].wall, count, totals[p]) for p in PATHS)
    return Pair(direct_side, gateway_side)


async def measure_large(bench: Bench, gateway: Gateway) -> Pair:
    """(b): one warm-up download per path, then timed downloads alternating direct, forwarder
    and gateway."""
    obj = bench.large
    paths = ("direct", "forwarder", "gateway")
    totals = {path: Cpu() for path in paths}
    received = dict.fromkeys(paths, 0)
    with running_forwarder(bench) as forwarder:
        direct_url = bench.urls("direct", gateway, [obj])[0]
        forwarded_url, host = forwarder.url(direct_url)
        targets: dict[str, tuple[URL, dict[str, str] | None, Gateway | Forwarder]] = {
            "direct": (direct_url, None, gateway),
            "forwarder": (forwarded_url, host, forwarder),
            "gateway": (bench.urls("gateway", gateway, [obj])[0], None, gateway),
        }
        async with client_session() as session:
            for url, headers, _ in targets.values():
                await download(session, url, obj, headers=headers)
            with py_spy(bench, gateway, "b-large"):
                for _ in range(bench.profile.large_downloads):
                    for path, (url, headers, middle) in targets.items():
                        meter = CpuMeter(bench, middle)
                        received[path] += await download(session, url, obj, headers=headers)
                        totals[path] += meter.elapsed()
    direct_side, forwarder_side, gateway_side = (
        Side(received[p] / MiB / totals[p].wall, received[p], totals[p]) for p in paths
    )
    return Pair(direct_side, gateway_side, forwarder_side)


async def measure_latency(
    bench: Bench, gateway: Gateway, checker: Checker
) -> tuple[Latencies, Latencies]:
    """(d): open loop at a fixed rate through each path, after a warm-up."""
    profile = bench.profile
    objects, warm = bench.small_cycle(profile.latency_requests), bench.small_cycle(CONCURRENCY)
    found = []
    for path in PATHS:
        urls = bench.urls(path, gateway, objects)
        async with client_session() as session:
            await closed_loop(session, bench.urls(path, gateway, warm), warm, checker)
            seconds = await open_loop(session, urls, objects, profile.rate, checker)
        found.append(Latencies(percentile(seconds, 50), percentile(seconds, 99)))
    return found[0], found[1]


async def measure_memory(bench: Bench, obj: StoredObject, name: str) -> Memory:
    """(c): a fresh gateway streams `obj` once to a client that checks its SHA-256."""
    async with running_gateway(bench, name) as gateway:
        idle = peak_rss(gateway.pid)
        (url,) = bench.signed(gateway, [obj])
        async with client_session() as session, RssSampler(gateway.pid) as sampler:
            await download(session, url, obj, verify=True)
        return Memory(idle, peak_rss(gateway.pid), sampler.peak)


async def measure(bench: Bench, results: Results) -> None:
    checker = results.checker = Checker(bench.small_bodies)
    async with running_gateway(bench, "load") as gateway:
        results.small = await measure_small(bench, gateway, checker)
        print_small(bench, results.small)
        results.large = await measure_large(bench, gateway)
        print_large(bench, results.large)
        results.latency = await measure_latency(bench, gateway, checker)
        print_latency(bench, *results.latency)
    results.memory = (
        await measure_memory(bench, bench.large, "memory-1x"),
        await measure_memory(bench, bench.huge, "memory-4x"),
    )
    print_memory(bench, *results.memory)


# Reporting.


def mib(value: float) -> str:
    return f"{value / MiB:.0f} MiB"


def verdict(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


def memory_flat(small: Memory, large: Memory) -> tuple[bool, int, int]:
    """(flat?, growth, allowed growth) of the peak VmHWM from the 1x to the 4x object."""
    growth = large.peak_hwm - small.peak_hwm
    allowed = max(RSS_SLACK_MIN, round(RSS_SLACK_FRACTION * small.peak_hwm))
    return growth <= allowed, growth, allowed


def print_header(bench: Bench) -> None:
    profile = bench.profile
    workers = bench.options.workers
    note = "" if workers == 1 else " (the targets are for one worker)"
    print(f"gateway load benchmark ({profile.name}), gateway workers: {workers}{note}")
    print(
        f"  host:    {os.cpu_count()} CPUs, Python {platform.python_version()}, "
        f"aiohttp {aiohttp.__version__}, uvloop {version('uvloop')}"
    )
    print("  storage: SeaweedFS S3 on 127.0.0.1")
    print("  direct:  botocore presigned URLs (SigV4 query auth), made before timing")
    print("  gateway: HMAC-SHA256 signed links, made before timing; access log off")
    print(
        f"  client:  aiohttp on uvloop in this process, up to {CONCURRENCY} keep-alive "
        "connections;\n           it shares the cores with gateway and storage "
        "(the same client for both paths)"
    )
    for name, value in bench.options.settings.items():
        print(f"  setting: GATEWAY_{name.upper()}={value}")
    if bench.options.profile_dir is not None:
        print(f"  py-spy:  recording the gateway into {bench.options.profile_dir} (figures lower)")
    print()


def print_sides(pair: Pair, unit: str, cpu_unit: str, per: float, decimals: int) -> None:
    """The two paths' figures, with CPU time per request (or per GiB) of each party."""
    print(f"    {'':8} {unit:>9}   CPU {cpu_unit}: {'client':>7} {'storage':>8} {'gateway':>8}")
    rows = [("direct", pair.direct), ("gateway", pair.gateway)]
    if pair.forwarder is not None:
        rows.insert(1, ("tcp fwd", pair.forwarder))
    for name, side in rows:
        cpu, scale = side.cpu, per / side.work
        print(
            f"    {name:8} {side.rate:9.{decimals}f}   {'':{len(cpu_unit) + 5}}"
            f"{cpu.client * scale:7.0f} {cpu.storage * scale:8.0f} {cpu.gateway * scale:8.0f}"
            f"   ({cpu.busy_cores:.1f} cores busy)"
        )
    direct, gateway = (side.cpu.total * per / side.work for side in (pair.direct, pair.gateway))
    print(
        f"    all parties: {direct:.0f} {cpu_unit} direct, {gateway:.0f} via the gateway; "
        f"CPU-bound ratio ~{direct / gateway:.2f}x"
    )


def print_small(bench: Bench, pair: Pair) -> None:
    n = bench.profile.small_requests
    print(
        f"(a) 4 KiB GETs, closed loop, {CONCURRENCY} concurrent connections: {n} requests per "
        f"path,\n    after a warm-up, in {SMALL_ROUNDS} rounds alternating direct/gateway"
    )
    print_sides(pair, "req/s", "µs per request", 1e6, 0)
    ok = pair.ratio >= SMALL_RATIO_TARGET
    print(f"    ratio    {pair.ratio:8.2f}x   target >= {SMALL_RATIO_TARGET}x   {verdict(ok)}")
    print()


def print_large(bench: Bench, pair: Pair) -> None:
    profile = bench.profile
    print(
        f"(b) {mib(profile.large_size)} object: {profile.large_downloads} downloads per path "
        "after a warm-up,\n    alternating direct/forwarder/gateway, body counted and discarded"
    )
    print_sides(pair, "MiB/s", "ms per GiB", 1e3 * GiB, 1)
    print(
        f"    tcp fwd: a bare TCP forwarder (splice, no HTTP) in the gateway's place, its CPU\n"
        f"             in the gateway column: {pair.forwarder_ratio:.2f}x direct, the ceiling "
        "for any proxy here"
    )
    ok = pair.ratio >= LARGE_RATIO_TARGET
    print(f"    ratio    {pair.ratio:8.2f}x   target >= {LARGE_RATIO_TARGET}x   {verdict(ok)}")
    print()


def print_latency(bench: Bench, direct: Latencies, gateway: Latencies) -> None:
    profile = bench.profile
    print(
        f"(d) 4 KiB GETs, open loop at {profile.rate:.0f} req/s "
        f"for {profile.latency_seconds:.0f} s ({profile.latency_requests} requests per path);\n"
        "    latency measured from each request's intended send time"
    )
    print(f"    {'':8} {'p50 ms':>8} {'p99 ms':>8}")
    for name, found in (("direct", direct), ("gateway", gateway)):
        print(f"    {name:8} {found.p50 * 1e3:8.2f} {found.p99 * 1e3:8.2f}")
    added_p50, added_p99 = (gateway.p50 - direct.p50) * 1e3, (gateway.p99 - direct.p99) * 1e3
    print(f"    {'added':8} {added_p50:+8.2f} {added_p99:+8.2f}")
    print()


def print_memory(bench: Bench, small: Memory, large: Memory) -> None:
    print(
        "(c) gateway memory: a fresh gateway per object streams it once (body SHA-256 checked);\n"
        "    largest VmHWM / sampled VmRSS over the gateway's processes"
    )
    print(f"    {'object':>9} {'VmHWM idle':>11} {'VmHWM after':>12} {'max VmRSS':>10}")
    for obj, found in ((bench.large, small), (bench.huge, large)):
        print(
            f"    {mib(obj.size):>9} {mib(found.idle_hwm):>11} {mib(found.peak_hwm):>12} "
            f"{mib(found.sampled_rss):>10}"
        )
    ok, growth, allowed = memory_flat(small, large)
    print(
        f"    growth {growth / MiB:+.1f} MiB for a 4x larger object; "
        f"target flat (<= +{allowed / MiB:.0f} MiB)   {verdict(ok)}"
    )
    print()


def summary_rows(bench: Bench, results: Results) -> list[tuple[str, str, str, bool | None]]:
    """(measure, figure, target, passed or None for information only)."""
    rows: list[tuple[str, str, str, bool | None]] = []
    if results.small is not None:
        ratio = results.small.ratio
        rows.append(
            (
                "(a) 4 KiB req/s, gateway/direct",
                f"{ratio:.2f}x",
                f">= {SMALL_RATIO_TARGET}x",
                ratio >= SMALL_RATIO_TARGET,
            )
        )
    if results.large is not None:
        ratio = results.large.ratio
        rows.append(
            (
                f"(b) {mib(bench.profile.large_size)} MiB/s, gateway/direct",
                f"{ratio:.2f}x",
                f">= {LARGE_RATIO_TARGET}x",
                ratio >= LARGE_RATIO_TARGET,
            )
        )
        rows.append(
            (
                "(b) bare TCP forwarder/direct",
                f"{results.large.forwarder_ratio:.2f}x",
                "(reference)",
                None,
            )
        )
    if results.memory is not None:
        ok, growth, allowed = memory_flat(*results.memory)
        rows.append(
            (
                f"(c) peak RSS, {mib(bench.huge.size)} vs {mib(bench.large.size)}",
                f"{growth / MiB:+.1f} MiB",
                f"flat (<= +{allowed / MiB:.0f} MiB)",
                ok,
            )
        )
    if results.latency is not None:
        direct, gateway = results.latency
        added = f"{(gateway.p50 - direct.p50) * 1e3:+.2f} / {(gateway.p99 - direct.p99) * 1e3:+.2f}"
        rows.append(("(d) added latency p50 / p99, ms", added, "(reported)", None))
    if results.checker is not None:
        checker = results.checker
        rows.append(
            (
                "responses correct",
                f"{len(checker.errors)} wrong",
                f"0 ({checker.compared} bodies compared)",
                not checker.errors,
            )
        )
    return rows


def print_summary(bench: Bench, results: Results) -> bool:
    """The summary table; True when every target passed."""
    found = summary_rows(bench, results)
    table = [["measure", "figure", "target", "result"]]
    table += [
        [name, figure, target, "info" if ok is None else verdict(ok)]
        for name, figure, target, ok in found
    ]
    widths = [max(len(row[i]) for row in table) for i in range(4)]
    table.insert(1, ["-" * w for w in widths])
    print("summary")
    for row in table:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())
    if results.checker is not None:
        for error in results.checker.errors[:10]:
            print(f"  wrong: {error}")
    return all(ok is not False for *_, ok in found)


# Entry point.


@contextlib.contextmanager
def storage(workdir: Path) -> Iterator[S3Server]:
    server = start_seaweedfs(workdir)
    try:
        yield server
    finally:
        server.stop()


def parse_setting(text: str) -> tuple[str, str]:
    name, sep, value = text.partition("=")
    name = name.strip().lower().removeprefix("gateway_")
    if not sep or not re.fullmatch(r"[a-z][a-z0-9_]*", name):
        raise argparse.ArgumentTypeError(f"{text!r}: must be NAME=VALUE (see `gateway settings`)")
    if name in HARNESS_SETTINGS:
        raise argparse.ArgumentTypeError(f"{name}: set by the harness itself")
    return name, value


def parse_args(argv: Sequence[str] | None) -> Options:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.gateway_load",
        description="Load the gateway over loopback and compare it with direct storage reads.",
    )
    parser.add_argument(
        "--quick", action="store_true", help="500 requests, 64/256 MiB objects, 5 s of latency"
    )
    parser.add_argument("--workers", type=int, default=1, metavar="N", help="gateway workers")
    parser.add_argument(
        "--setting",
        type=parse_setting,
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="another gateway setting, e.g. chunk_size=1048576 (repeatable)",
    )
    parser.add_argument(
        "--profile",
        type=Path,
        metavar="DIR",
        help="record the gateway with py-spy during the timed runs of (a) and (b) into DIR",
    )
    args = parser.parse_args(argv)
    if not 1 <= args.workers <= 256:
        parser.error("--workers must be from 1 to 256")
    if args.profile is not None and args.profile.exists() and not args.profile.is_dir():
        parser.error(f"--profile {args.profile}: not a directory")
    return Options(
        profile=QUICK if args.quick else FULL,
        workers=args.workers,
        profile_dir=args.profile,
        settings=dict(args.setting),
    )


def main(argv: Sequence[str] | None = None) -> int:
    options = parse_args(argv)
    if options.profile_dir is not None:
        options.profile_dir.mkdir(parents=True, exist_ok=True)
    results = Results()
    started = time.monotonic()
    try:
        with (
            tempfile.TemporaryDirectory(prefix="gateway-load-") as tmp,
            storage(Path(tmp)) as s3,
        ):
            bench = prepare(s3, Path(tmp), options)
            print_header(bench)
            uvloop.run(measure(bench, results))
            passed = print_summary(bench, results)
    except (BenchError, aiohttp.ClientError, TimeoutError) as exc:
        print(f"gateway_load: error: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("gateway_load: interrupted; servers stopped", file=sys.stderr)
        return 130
    print(f"\ntotal time {time.monotonic() - started:.0f} s")
    return 0 if passed else 1


if __name__ == "__main__":
    raise SystemExit(main())
