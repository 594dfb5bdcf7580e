"""One benchmark run: check every peer's answers, then load them in alternating rounds.

Peers share one storage and two cores with the load generator, so the figures of one run are
compared with each other (ratios), never with another run's. Rounds alternate the peers, in
reverse order every other round, so that drift on a shared host is spread over all of them.
"""

from __future__ import annotations

import secrets
import statistics
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

import uvloop

from benchmarks.gateway_load import measure
from benchmarks.gateway_load.measure import (
    BenchError,
    CpuMeter,
    Load,
    MiB,
    RssSampler,
    WakeProbe,
    WrkRun,
    client_session,
    download,
    peak_rss,
    wrong_answers,
)
from benchmarks.gateway_load.objects import (
    Objects,
    Signers,
    StoredObject,
    links,
    upload,
    write_targets,
)
from benchmarks.gateway_load.processes import (
    TLS_PEER,
    Peer,
    gateway_settings,
    https_url,
    peers,
    py_spy,
    tls_settings,
)
from signer import Algorithm, Keyring, Status, new_key
from tests.servers import S3Server, gateway_serve

SMALL_CONNECTIONS: Final = 32  # wrk -c32, as issue 16's targets are stated
LARGE_CONNECTIONS: Final = 1  # one download at a time: MiB/s of one stream
LARGE_LINKS: Final = 16
PACED_GAP: Final = 0.02  # paced runs: each connection waits 20 ms on average per request
CHECKED_BODIES: Final = 16  # small answers per peer compared byte for byte before timing
SMALL_PEERS: Final = ("direct", "gateway-1", "gateway-2", "nginx")
LARGE_PEERS: Final = (*SMALL_PEERS, "tcp-fwd")


@dataclass(frozen=True)
class Profile:
    """How long and how large: `full` for figures, `quick` to prove the harness works."""

    name: str
    rounds: int
    seconds: int  # each timed wrk run
    latency_seconds: int  # each paced run (as many rounds)
    warmup_seconds: int  # an untimed wrk run per peer first; 0: none
    large_size: int
    links: int  # distinct small-object links per peer
    judged: bool  # whether targets are judged: quick runs are too short for figures

    @property
    def huge_size(self) -> int:
        return 4 * self.large_size


FULL: Final = Profile("full", 3, 5, 4, 1, 256 * MiB, 8192, judged=True)
QUICK: Final = Profile("quick", 1, 1, 1, 0, 8 * MiB, 512, judged=False)


@dataclass(frozen=True)
class Options:
    profile: Profile
    settings: dict[str, str] = field(default_factory=dict)  # extra gateway settings
    profile_dir: Path | None = None  # --profile: py-spy output
    tls: bool = False  # --tls: the one-worker gateway over TLS too, in (a), (b) and (d)
    limits: bool = False  # --limits: only the usage-limit comparison (`limits.py`)


@dataclass(frozen=True)
class Measured:
    """One timed wrk run through a peer, and the CPU seconds each party used meanwhile."""

    wrk: WrkRun
    cpu: dict[str, float]  # "wrk", "storage", "proxy" (absent for direct)


@dataclass
class Row:
    """A peer's runs of one kind (small, large or paced), added up."""

    peer: str
    runs: list[Measured] = field(default_factory=list)

    @property
    def requests(self) -> int:
        return sum(m.wrk.requests for m in self.runs)

    @property
    def bytes(self) -> int:
        return sum(m.wrk.bytes for m in self.runs)

    @property
    def seconds(self) -> float:
        return sum(m.wrk.seconds for m in self.runs)

    @property
    def failed(self) -> bool:
        return not self.runs or any(m.wrk.failed for m in self.runs)

    @property
    def non_2xx(self) -> int:
        return sum(m.wrk.non_2xx for m in self.runs)

    @property
    def socket_errors(self) -> int:
        return sum(m.wrk.socket_errors for m in self.runs)

    def cpu(self, party: str) -> float | None:
        """CPU seconds of `party` over all runs; None if it took no part."""
        if not self.runs or party not in self.runs[0].cpu:
            return None
        return sum(m.cpu[party] for m in self.runs)

    @property
    def p50(self) -> float:
        """Median over the runs of each run's median latency, in seconds."""
        return statistics.median(m.wrk.p50 for m in self.runs)

    @property
    def p99(self) -> float:
        """Median over the runs of each run's 99th percentile: one noisy run does not decide."""
        return statistics.median(m.wrk.p99 for m in self.runs)

    @property
    def rate(self) -> float:
        """Requests per second."""
        return self.requests / self.seconds if self.seconds else 0.0

    @property
    def mib_per_second(self) -> float:
        return self.bytes / MiB / self.seconds if self.seconds else 0.0


@dataclass(frozen=True)
class Memory:
    """A fresh gateway streaming one object: VmHWM before and after, largest sampled VmRSS."""

    size: int
    idle_hwm: int
    peak_hwm: int
    sampled_rss: int


@dataclass
class Results:
    profile: Profile
    settings: dict[str, str]
    small: dict[str, Row] = field(default_factory=dict)
    large: dict[str, Row] = field(default_factory=dict)
    paced: dict[str, Row] = field(default_factory=dict)
    paced_rate: float = 0.0  # the rate each paced run aimed at
    wake: dict[str, float] | None = None  # the host's wake-up lateness during them (WakeProbe)
    memory: list[Memory] = field(default_factory=list)  # the large object, then the 4x one
    tls_memory: list[Memory] = field(default_factory=list)  # the same over TLS (--tls)
    wrong: dict[str, list[str]] = field(default_factory=dict)  # peer -> wrong answers
    checked: int = 0  # answers the checking client compared

    def rows(self) -> Iterable[Row]:
        yield from self.small.values()
        yield from self.large.values()
        yield from self.paced.values()


class Loader:
    """Runs wrk through peers and meters every party; each list continues where it stopped."""

    def __init__(self, storage_pid: int, targets: Mapping[tuple[str, str], Path]) -> None:
        self.storage_pid = storage_pid
        self.targets = targets
        self.offsets: dict[tuple[str, str], int] = dict.fromkeys(targets, 0)

    def load(self, peer: Peer, kind: str, connections: int, seconds: int, delay: int = 0) -> Load:
        key = (peer.scheme, kind)
        return Load(
            base_url=peer.base_url,
            targets=self.targets[key],
            connections=connections,
            seconds=seconds,
            offset=self.offsets[key],
            host=peer.host,
            mean_delay_ms=delay,
        )

    def measure(self, peer: Peer, load: Load, kind: str) -> Measured:
        roots = {"storage": self.storage_pid}
        if peer.pid is not None:
            roots["proxy"] = peer.pid
        meter = CpuMeter(roots)
        found, wrk_cpu = measure.run_wrk(load)
        cpu = {"wrk": wrk_cpu, **meter.elapsed()}
        self.offsets[(peer.scheme, kind)] += found.requests
        return Measured(found, cpu)

    def rounds(
        self,
        peers: Sequence[Peer],
        kind: str,
        connections: int,
        profile: Profile,
        profiled: tuple[Peer, Path | None],
    ) -> dict[str, Row]:
        """A warm-up per peer, then `profile.rounds` timed runs each, alternating peers."""
        if profile.warmup_seconds:
            for peer in peers:
                self.measure(peer, self.load(peer, kind, connections, profile.warmup_seconds), kind)
        rows = {peer.name: Row(peer.name) for peer in peers}
        target, output = profiled
        assert target.pid is not None
        with py_spy(target.pid, output):
            for index in range(profile.rounds):
                order = peers if index % 2 == 0 else list(reversed(peers))
                for peer in order:
                    load = self.load(peer, kind, connections, profile.seconds)
                    rows[peer.name].runs.append(self.measure(peer, load, kind))
        return rows

    def paced(self, peers: Sequence[Peer], rate: float, profile: Profile) -> dict[str, Row]:
        """Each peer at the same offered rate, requests spread at random over the connections,
        in `profile.rounds` rounds alternating peers."""
        connections = max(1, round(rate * PACED_GAP))
        delay = max(1, round(1000 * connections / rate))
        rows = {peer.name: Row(peer.name) for peer in peers}
        for index in range(profile.rounds):
            for peer in peers if index % 2 == 0 else list(reversed(peers)):
                load = self.load(peer, "small", connections, profile.latency_seconds, delay)
                rows[peer.name].runs.append(self.measure(peer, load, "small"))
        return rows


def _prepare_targets(
    workdir: Path, signers: Signers, objects: Objects, profile: Profile
) -> dict[tuple[str, str], Path]:
    found = {}
    for scheme in ("direct", "gateway", "nginx"):
        sign = signers.by_scheme(scheme)
        small = links(sign, objects.small, profile.links)
        large = links(sign, [objects.large], LARGE_LINKS)
        found[(scheme, "small")] = write_targets(workdir / f"targets-{scheme}-small.txt", small)
        found[(scheme, "large")] = write_targets(workdir / f"targets-{scheme}-large.txt", large)
    return found


def _first_targets(path: Path, count: int) -> list[str]:
    return path.read_text().splitlines()[:count]


async def check_answers(
    found: Mapping[str, Peer], targets: Mapping[tuple[str, str], Path], objects: Objects
) -> tuple[dict[str, list[str]], int]:
    """Before timing, through every peer: small answers compared byte for byte, and one large
    download's SHA-256. Returns the wrong answers per peer, and how many were compared."""
    wrong: dict[str, list[str]] = {}
    compared = 0
    async with client_session() as session:
        for peer in found.values():
            headers = {} if peer.host is None else {"Host": peer.host}
            problems: list[str] = []
            if peer.name in (*SMALL_PEERS, TLS_PEER):
                small = _first_targets(targets[(peer.scheme, "small")], CHECKED_BODIES)
                bodies = [objects.bodies[objects.small[i].key] for i in range(len(small))]
                requests = [(peer.base_url + target, headers) for target in small]
                problems += await wrong_answers(session, requests, bodies)
                compared += len(small)
            (large,) = _first_targets(targets[(peer.scheme, "large")], 1)
            large_obj = objects.large
            problem = await download(
                session, peer.base_url + large, large_obj.size, large_obj.sha256, headers
            )
            compared += 1
            if problem is not None:
                problems.append(f"{large_obj.key}: {problem}")
            if problems:
                wrong[peer.name] = problems
    return wrong, compared


async def measure_memory(
    workdir: Path,
    s3: S3Server,
    signers: Signers,
    settings: Mapping[str, str],
    obj: StoredObject,
    *,
    tls: bool = False,
) -> Memory:
    """A fresh one-worker gateway streams `obj` once to a client that checks its SHA-256."""
    name = f"memory-{obj.size // MiB}m" + ("-tls" if tls else "")
    if tls:
        settings = tls_settings(workdir, settings)
    with gateway_serve(workdir, settings, env=s3.env(), name=name) as gateway:
        idle = peak_rss(gateway.pid)
        (target,) = links(signers.gateway(), [obj], 1)
        url = https_url(gateway.port) + target if tls else gateway.url(target)
        async with client_session() as session, RssSampler(gateway.pid) as sampler:
            problem = await download(session, url, obj.size, obj.sha256)
        if problem is not None:
            raise BenchError(f"memory check, {obj.key}: {problem}")
        return Memory(obj.size, idle, peak_rss(gateway.pid), sampler.peak)


def run(workdir: Path, s3: S3Server, options: Options) -> Results:
    """Upload, start the peers, check their answers, then load them; the storage is the
    caller's (SeaweedFS with anonymous reads of the bucket, `processes.storage`)."""
    profile = options.profile
    results = Results(profile, dict(options.settings))
    objects = upload(s3, profile.large_size)
    keyring = Keyring([new_key("bench", Algorithm.HMAC_SHA256, Status.ACTIVE)])
    keyring_file = workdir / "gateway-keyring.json"
    keyring.public_export().save(keyring_file, public_only=True)
    signers = Signers(s3, keyring, secrets.token_urlsafe(24))
    targets = _prepare_targets(workdir, signers, objects, profile)
    assert s3.process is not None
    loader = Loader(s3.process.pid, targets)
    output_dir = options.profile_dir

    def profile_output(name: str) -> Path | None:
        return None if output_dir is None else output_dir / f"gateway-{name}.txt"

    with peers(
        workdir, s3, keyring_file, signers.nginx_secret, options.settings, tls=options.tls
    ) as found:
        results.wrong, results.checked = uvloop.run(check_answers(found, targets, objects))
        profiled = found["gateway-1"]
        with_tls = [TLS_PEER] if options.tls else []
        small = [found[name] for name in (*SMALL_PEERS, *with_tls)]
        large = [found[name] for name in (*LARGE_PEERS, *with_tls)]
        results.small = loader.rounds(
            small, "small", SMALL_CONNECTIONS, profile, (profiled, profile_output("small"))
        )
        results.large = loader.rounds(
            large, "large", LARGE_CONNECTIONS, profile, (profiled, profile_output("large"))
        )
        reference = results.small["gateway-1"]
        if not reference.failed:
            results.paced_rate = reference.rate / 2
            plain = [peer for peer in small if peer.name != TLS_PEER]
            with WakeProbe() as probe:
                results.paced = loader.paced(plain, results.paced_rate, profile)
            results.wake = probe.figures
    settings = gateway_settings(s3, keyring_file, 1, options.settings)
    for obj in (objects.large, objects.huge):
        results.memory.append(uvloop.run(measure_memory(workdir, s3, signers, settings, obj)))
    for obj in (objects.large, objects.huge) if options.tls else ():
        measured = measure_memory(workdir, s3, signers, settings, obj, tls=True)
        results.tls_memory.append(uvloop.run(measured))
    return results
