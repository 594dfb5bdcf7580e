"""Measurement: wrk runs, CPU time per process from /proc/PID/stat, memory, a checking client.

Nothing here starts a server; `processes` does. Loads only ever target 127.0.0.1 and every
wrk run is bounded by its duration.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.parse
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import aiohttp

KiB: Final = 1024
MiB: Final = 1024 * KiB
GiB: Final = 1024 * MiB
WRK_SCRIPT: Final = Path(__file__).with_name("rotate.lua")
WRK_TIMEOUT: Final = "30s"  # per request: a 256 MiB download must not count as a timeout
WRK_EXIT_GRACE: Final = 30.0  # beyond its duration, before a wrk that hangs is killed
CLIENT_READ_BUFSIZE: Final = 1 * MiB
CLIENT_TIMEOUT: Final = 300.0
RSS_SAMPLE_INTERVAL: Final = 0.02
_CLOCK_TICKS: Final = os.sysconf("SC_CLK_TCK")


class BenchError(RuntimeError):
    """The harness could not measure: a server did not start, or a tool misbehaved."""


# Processes: their trees, CPU time and memory, from /proc.


def _stat_fields(pid: int) -> list[str] | None:
    """/proc/PID/stat from the state field on (the command name may hold spaces)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return None


def process_tree(root: int) -> list[int]:
    """`root` and all its descendants (a gateway's supervisor and workers, nginx's master and
    workers)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and (fields := _stat_fields(int(entry.name))) is not None:
            children.setdefault(int(fields[1]), []).append(int(entry.name))
    found, pending = [], [root]
    while pending:
        pid = pending.pop()
        found.append(pid)
        pending.extend(children.get(pid, ()))
    return found


def cpu_seconds(pids: Sequence[int]) -> float:
    """User + system CPU seconds of `pids` so far (utime and stime of /proc/PID/stat: all of
    a process's threads, exited ones included; 10 ms ticks, fine for runs of seconds)."""
    ticks = 0
    for pid in pids:
        fields = _stat_fields(pid)
        if fields is not None:
            ticks += int(fields[11]) + int(fields[12])
    return ticks / _CLOCK_TICKS


class CpuMeter:
    """CPU seconds used by each named process tree from now until `elapsed()`."""

    def __init__(self, roots: Mapping[str, int]) -> None:
        self._trees = {name: process_tree(pid) for name, pid in roots.items()}
        self._start = self._now()

    def _now(self) -> dict[str, float]:
        return {name: cpu_seconds(pids) for name, pids in self._trees.items()}

    def elapsed(self) -> dict[str, float]:
        now = self._now()
        return {name: now[name] - self._start[name] for name in now}


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
    """The largest VmHWM in a process tree (with workers, a stream lands on one of them)."""
    return max(status_bytes(pid, "VmHWM") for pid in process_tree(root))


class RssSampler:
    """Samples the largest VmRSS of a process tree in the background."""

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


class WakeProbe:
    """`wake_probe` in its own process for the block: how late the host wakes a sleeper
    meanwhile. `figures` (p50, p99 in seconds, samples) is set on the way out."""

    def __init__(self) -> None:
        self.figures: dict[str, float] | None = None
        self._process: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> WakeProbe:
        command = [sys.executable, str(Path(__file__).with_name("wake_probe.py"))]
        self._process = subprocess.Popen(
            command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL
        )
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._process is not None
        try:
            output, _ = self._process.communicate(timeout=WRK_EXIT_GRACE)  # closes its stdin
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.communicate()
            return
        if self._process.returncode == 0 and output.strip():
            self.figures = json.loads(output)


# wrk.


@dataclass(frozen=True)
class WrkRun:
    """What one wrk run reports: counters from its done() line, and its failures."""

    requests: int
    bytes: int
    seconds: float
    p50: float  # seconds
    p99: float
    non_2xx: int  # "Non-2xx or 3xx responses"
    socket_errors: int  # connect, read, write errors and timeouts

    @property
    def failed(self) -> bool:
        """A run with any failed request measured something else than serving the object."""
        return self.non_2xx > 0 or self.socket_errors > 0 or self.requests == 0


_NON_2XX = re.compile(r"^\s*Non-2xx or 3xx responses:\s*(\d+)\s*$", re.MULTILINE)


def parse_wrk(output: str) -> WrkRun:
    """wrk's output with rotate.lua's WRK_JSON line; BenchError when that line is missing."""
    line = next((ln for ln in output.splitlines() if ln.startswith("WRK_JSON ")), None)
    if line is None:
        raise BenchError(f"wrk printed no WRK_JSON line:\n{output[-1000:]}")
    found = json.loads(line.removeprefix("WRK_JSON "))
    printed = _NON_2XX.search(output)
    non_2xx = max(found["status"], int(printed.group(1)) if printed else 0)
    return WrkRun(
        requests=found["requests"],
        bytes=found["bytes"],
        seconds=found["duration_us"] / 1e6,
        p50=found["p50_us"] / 1e6,
        p99=found["p99_us"] / 1e6,
        non_2xx=non_2xx,
        socket_errors=sum(found[k] for k in ("connect", "read", "write", "timeout")),
    )


def wrk_binary() -> str | None:
    """Debian's wrk (package wrk), or None when it is not installed."""
    return shutil.which("wrk")


@dataclass(frozen=True)
class Load:
    """One wrk run's shape: where, which targets, how hard and for how long."""

    base_url: str  # http://127.0.0.1:PORT
    targets: Path  # one request target a line
    connections: int
    seconds: int
    offset: int = 0  # first target of this run
    host: str | None = None  # a Host header other than the URL's
    mean_delay_ms: int = 0  # 0: closed loop; else paced (see rotate.lua)


def on_loopback(url: str) -> bool:
    """Whether `url` is plain http://127.0.0.1:PORT, the only place a load may go."""
    parts = urllib.parse.urlsplit(url)
    return (
        parts.scheme == "http"
        and parts.hostname == "127.0.0.1"
        and parts.username is None
        and parts.port is not None
        and parts.path in ("", "/")
        and not parts.query
    )


def loadable(url: str) -> bool:
    """Where a load may go: `on_loopback`, or the same over TLS (https://127.0.0.1:PORT)."""
    return on_loopback(url) or (
        url.startswith("https://") and on_loopback("http://" + url.removeprefix("https://"))
    )


def run_wrk(load: Load) -> tuple[WrkRun, float]:
    """Run wrk once (one thread); its figures, and the CPU seconds wrk itself used."""
    if not loadable(load.base_url):
        raise BenchError(f"{load.base_url}: loads target 127.0.0.1 only")
    binary = wrk_binary()
    if binary is None:
        raise BenchError("no `wrk`: install the Debian package wrk")
    command = [binary, "-t1", f"-c{load.connections}", f"-d{load.seconds}s"]
    command += ["--timeout", WRK_TIMEOUT, "--latency", "-s", str(WRK_SCRIPT)]
    if load.host is not None:
        command += ["-H", f"Host: {load.host}"]
    command += [load.base_url, "--", str(load.targets), str(load.offset), str(load.mean_delay_ms)]
    with tempfile.TemporaryFile() as output:
        process = subprocess.Popen(
            command, stdin=subprocess.DEVNULL, stdout=output, stderr=subprocess.STDOUT
        )
        status, usage = _wait_with_usage(process, load.seconds + WRK_EXIT_GRACE)
        output.seek(0)
        text = output.read().decode(errors="replace")
    if status != 0:
        raise BenchError(f"wrk exited with {status}:\n{text[-1000:]}")
    return parse_wrk(text), usage.ru_utime + usage.ru_stime


def _wait_with_usage(
    process: subprocess.Popen[bytes], timeout: float
) -> tuple[int, resource.struct_rusage]:
    """Reap `process` (killed past `timeout`), with the resources it used (wait4)."""
    deadline = time.monotonic() + timeout
    while True:
        pid, status, usage = os.wait4(process.pid, os.WNOHANG)
        if pid:
            process.returncode = os.waitstatus_to_exitcode(status)
            return process.returncode, usage
        if time.monotonic() > deadline:
            process.kill()
            _, status, usage = os.wait4(process.pid, 0)
            process.returncode = os.waitstatus_to_exitcode(status)
            return process.returncode, usage
        time.sleep(0.05)


# A Python client where wrk cannot do the job: checking bodies, and one checked download.


def client_session(connections: int = 8) -> aiohttp.ClientSession:
    """The checking client; over TLS it takes the benchmark's self-signed certificate."""
    return aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=connections, ssl=False),
        timeout=aiohttp.ClientTimeout(total=CLIENT_TIMEOUT),
        auto_decompress=False,
        read_bufsize=CLIENT_READ_BUFSIZE,
    )


async def wrong_answers(
    session: aiohttp.ClientSession,
    requests: Sequence[tuple[str, Mapping[str, str]]],
    expected: Sequence[bytes],
) -> list[str]:
    """GET each (url, headers); a line per answer that is not 200 with the expected body."""
    found: list[str] = []
    for (url, headers), body in zip(requests, expected, strict=True):
        async with session.get(url, headers=headers) as response:
            got = await response.read()
        if response.status != 200 or got != body:
            found.append(f"status {response.status}, {len(got)} of {len(body)} bytes expected")
    return found


async def download(
    session: aiohttp.ClientSession,
    url: str,
    size: int,
    sha256: str,
    headers: Mapping[str, str] | None = None,
) -> str | None:
    """Stream one object and check its size and SHA-256; what was wrong, or None."""
    digest = hashlib.sha256()
    received = 0
    async with session.get(url, headers=headers) as response:
        if response.status != 200:
            return f"status {response.status}"
        async for chunk in response.content.iter_any():
            received += len(chunk)
            digest.update(chunk)
    if received != size:
        return f"{received} of {size} bytes"
    if digest.hexdigest() != sha256:
        return "SHA-256 differs from the uploaded object"
    return None
