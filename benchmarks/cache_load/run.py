"""One cache benchmark run: check every peer's answers (which fills both caches), then load
the peers in alternating rounds, then the runs that need fresh processes.

    (e) 4 KiB objects, caches warm      wrk -c32   direct, gateway (no cache), gateway cache,
    (f) the large object, caches warm   wrk -c1    nginx proxy_cache
    (g) cold 4 KiB requests             wrk -c32   gateway (no cache) vs gateway cache, each
                                                   request a new object for the cache
    (h) S3-FIFO vs LRU on a Zipf trace with a scan (a simulation, `trace`)
    (i) origin shielding: N clients at once on one cold object, storage GETs counted
    memory: fresh cache gateways, memory tier at its bound, streaming the large object or
            the 4x one (cold, then from the disk tier)

As in gateway_load, figures of one run are compared with each other, never with another
run's. A warm run is checked to have been answered by the cache (the gateway's
gateway_cache_requests_total, nginx's $upstream_cache_status), and a cold one to have missed
on every request: otherwise it measured something else, and the run says so.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import secrets
import time
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

import uvloop
from prometheus_client.parser import text_string_to_metric_families

from benchmarks.cache_load import trace
from benchmarks.cache_load.counting import counting_forwarder
from benchmarks.cache_load.objects import upload_many
from benchmarks.cache_load.peers import (
    CachePeer,
    cache_gateway,
    cache_nginx,
    peers,
    slice_bytes,
)
from benchmarks.gateway_load.measure import (
    BenchError,
    KiB,
    MiB,
    RssSampler,
    client_session,
    download,
    peak_rss,
    wrong_answers,
)
from benchmarks.gateway_load.objects import (
    Objects,
    Signer,
    Signers,
    StoredObject,
    links,
    upload,
    upload_random,
    write_targets,
)
from benchmarks.gateway_load.processes import Peer, py_spy
from benchmarks.gateway_load.run import Loader, Measured, Row
from signer import Algorithm, Keyring, Status, new_key
from tests.servers import S3Server

SMALL_CONNECTIONS: Final = 32
LARGE_CONNECTIONS: Final = 1
LARGE_LINKS: Final = 16
WARM_PEERS: Final = ("direct", "gateway", "gateway-cache", "nginx-cache")
COLD_PEERS: Final = ("gateway", "gateway-cache")
CACHE_PEERS: Final = ("gateway-cache", "nginx-cache")
SHIELD_PEERS: Final = ("gateway-cache", "nginx-cache")
# The cold pool holds this many times the requests one path's cold runs are expected to make
# (at the no-cache gateway's (e) rate), so that no request of a cold run finds its object
# cached; each path reads the pool from its own end.
COLD_MARGIN: Final = 1.5
COLD_POOL_MIN: Final = 1024
COLD_POOL_MAX: Final = 60_000
MEMORY_OBJECT: Final = 1 * MiB  # the gateway's default cache_memory_object_bytes
MEMORY_FILL: Final = 1.5  # the memory tier is filled with this many times its bound
DOWNLOADS_AT_ONCE: Final = 8


@dataclass(frozen=True)
class Profile:
    """How long and how large: `full` for figures, `quick` to prove the harness works."""

    name: str
    rounds: int
    seconds: int  # each timed wrk run of (e) and (f)
    cold_seconds: int  # each timed wrk run of (g)
    warmup_seconds: int  # an untimed wrk run per peer before (e) and (f); 0: none
    large_size: int  # (f), and memory (with 4x)
    links: int  # distinct small-object links per peer
    shield_size: int  # (i)
    shield_clients: int
    memory_bytes: int  # the memory tier's bound in the memory measure
    trace_requests: int  # (h), besides the scan
    judged: bool  # whether timed targets are judged: quick runs are too short for figures

    @property
    def huge_size(self) -> int:
        return 4 * self.large_size


FULL: Final = Profile(
    "full", 3, 5, 2, 1, 256 * MiB, 8192, 64 * MiB, 100, 32 * MiB, 200_000, judged=True
)
QUICK: Final = Profile(
    "quick", 1, 1, 1, 0, 8 * MiB, 512, 8 * MiB, 32, 8 * MiB, 20_000, judged=False
)


@dataclass(frozen=True)
class Options:
    profile: Profile
    settings: dict[str, str] = field(default_factory=dict)  # extra gateway settings
    profile_dir: Path | None = None  # --profile: py-spy output
    only_cold: bool = False  # --only g: (g) alone (after the no-cache gateway's (e) rate)


@dataclass(frozen=True)
class Shielding:
    """N clients at once on one object no cache has seen: what reached the storage."""

    peer: str
    size: int
    clients: int
    slices: int  # of the object, at the run's slice size
    gets: int  # GETs of the object the storage received
    ranges: dict[str, int]  # Range header (or "" for none) -> GETs with it
    right: int  # clients that got the whole object, SHA-256 checked
    seconds: float  # from the first request to the last byte of the last client

    @property
    def most(self) -> int:
        """GETs of the most-fetched range."""
        return max(self.ranges.values(), default=0)

    @property
    def each_slice_once(self) -> bool:
        return self.gets == self.slices and self.most == 1 and self.right == self.clients


@dataclass(frozen=True)
class CacheMemory:
    """A fresh cache gateway: memory tier filled past its bound, then `size` streamed twice
    (cold, then from the disk tier). VmHWM at each step, the largest sampled VmRSS."""

    size: int
    memory_bound: int
    memory_held: int  # bytes in the memory tier after filling it
    disk_held: int  # bytes in the disk tier at the end
    idle_hwm: int
    filled_hwm: int
    peak_hwm: int
    sampled_rss: int


@dataclass
class Results:
    profile: Profile
    settings: dict[str, str]
    small: dict[str, Row] = field(default_factory=dict)  # (e)
    large: dict[str, Row] = field(default_factory=dict)  # (f)
    cold: dict[str, Row] = field(default_factory=dict)  # (g)
    cold_pool: int = 0
    # ("small" | "large" | "cold", peer) -> cache outcome -> requests, over the timed runs
    states: dict[tuple[str, str], dict[str, int]] = field(default_factory=dict)
    policies: list[trace.Simulated] = field(default_factory=list)  # (h)
    policy_capacity: int = 0
    shielding: list[Shielding] = field(default_factory=list)  # (i)
    memory: list[CacheMemory] = field(default_factory=list)
    wrong: dict[str, list[str]] = field(default_factory=dict)  # peer -> wrong answers
    checked: int = 0

    def rows(self) -> Iterator[Row]:
        yield from self.small.values()
        yield from self.large.values()
        yield from self.cold.values()

    def unserved(self) -> list[str]:
        """Timed runs the cache did not answer as meant: warm ones with a miss, cold ones
        with a hit (each measured something else)."""
        found = []
        for (kind, peer), states in self.states.items():
            total = sum(states.values())
            wanted = "miss" if kind == "cold" else "hit"
            if states.get(wanted, 0) != total or total == 0:
                found.append(f"{kind} via {peer}: {_states_text(states)}")
        return found


def _states_text(states: Mapping[str, int]) -> str:
    return ", ".join(f"{count} {state}" for state, count in sorted(states.items())) or "none"


# Which requests a cache answered.


def _http_get(url: str) -> str:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(url, timeout=10) as answer:
        text: str = answer.read().decode()
        return text


def gateway_metrics(admin_url: str) -> dict[tuple[str, str], float]:
    """(sample name, its one label's value) -> value, of the gateway's cache metrics."""
    found: dict[tuple[str, str], float] = {}
    for family in text_string_to_metric_families(_http_get(admin_url + "/metrics")):
        for sample in family.samples:
            if sample.name.startswith("gateway_cache_"):
                label = next(iter(sample.labels.values()), "")
                found[(sample.name, label)] = sample.value
    return found


class StateCounter:
    """Counts a cache peer's outcomes (hit, miss, ...) between `start()` and `stop()`."""

    def __init__(self, peer: CachePeer) -> None:
        self.peer = peer
        self._before: Counter[str] = Counter()

    def _now(self) -> Counter[str]:
        if self.peer.admin_url is not None:
            metrics = gateway_metrics(self.peer.admin_url)
            return Counter(
                {
                    state: round(value)
                    for (name, state), value in metrics.items()
                    if name == "gateway_cache_requests_total"
                }
            )
        assert self.peer.cache_log is not None
        lines = self.peer.cache_log.read_text().split()
        return Counter(line.lower() for line in lines)

    def start(self) -> None:
        self._before = self._now()

    def stop(self) -> dict[str, int]:
        delta = self._now() - self._before
        return {state: count for state, count in delta.items() if count}


# Load.


@dataclass
class Plan:
    """What the loads of one run share: the loader (its lists and offsets), the cache peers'
    counters, where py-spy writes."""

    loader: Loader
    peers: Mapping[str, CachePeer]
    results: Results
    profile_dir: Path | None

    def rounds(self, kind: str, names: Sequence[str], connections: int, seconds: int) -> None:
        """A warm-up per peer, then `profile.rounds` timed runs each, alternating peers (in
        reverse order every other round), counting the cache peers' outcomes meanwhile."""
        profile = self.results.profile
        chosen = [self.peers[name] for name in names]
        if profile.warmup_seconds and kind != "cold":
            for peer in chosen:
                self._measure(peer.peer, kind, connections, profile.warmup_seconds)
        rows = {name: Row(name) for name in names}
        counters = {
            p.peer.name: StateCounter(p)
            for p in chosen
            if p.admin_url is not None or p.cache_log is not None
        }
        for counter in counters.values():
            counter.start()
        with self._profiled(kind, names):
            for index in range(profile.rounds):
                for peer in chosen if index % 2 == 0 else list(reversed(chosen)):
                    measured = self._measure(peer.peer, kind, connections, seconds)
                    rows[peer.peer.name].runs.append(measured)
        for name, counter in counters.items():
            self.results.states[(kind, name)] = counter.stop()
        getattr(self.results, kind).update(rows)

    @contextlib.contextmanager
    def _profiled(self, kind: str, names: Sequence[str]) -> Iterator[None]:
        """py-spy on the cache gateway (`cache-KIND.txt`) while it is loaded, and during the
        cold runs on the no-cache gateway too (`plain-cold.txt`): the miss path beside the
        path it must be no worse than."""
        chosen = {"gateway-cache": f"cache-{kind}.txt"}
        if kind == "cold":
            chosen["gateway"] = "plain-cold.txt"
        with contextlib.ExitStack() as stack:
            for name, file_name in chosen.items():
                if self.profile_dir is not None and name in names:
                    pid = self.peers[name].peer.pid
                    assert pid is not None
                    stack.enter_context(py_spy(pid, self.profile_dir / file_name))
            yield

    def _measure(self, peer: Peer, kind: str, connections: int, seconds: int) -> Measured:
        list_kind = f"{kind}-{peer.name}" if kind == "cold" else kind
        load = self.loader.load(peer, list_kind, connections, seconds)
        measured = self.loader.measure(peer, load, list_kind)
        if kind == "cold":
            # wrk stops with up to one request per connection sent but not counted: the next
            # run starts past them, or it would ask for objects the cache has just seen.
            self.loader.offsets[(peer.scheme, list_kind)] += connections
        return measured


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


async def check_answers(
    found: Mapping[str, CachePeer], signers: Signers, objects: Objects
) -> tuple[dict[str, list[str]], int]:
    """Before timing, through every peer: every small object byte for byte and the large
    one's SHA-256; twice through the caches (filled, then answered from them). This is also
    what makes the caches warm. Returns the wrong answers per peer, and how many were
    compared."""
    wrong: dict[str, list[str]] = {}
    compared = 0
    async with client_session() as session:
        for name, cache_peer in found.items():
            peer = cache_peer.peer
            sign = signers.by_scheme(peer.scheme)
            problems: list[str] = []
            for _ in range(2 if name in CACHE_PEERS else 1):
                small = links(sign, objects.small, len(objects.small))
                requests: list[tuple[str, dict[str, str]]] = [
                    (peer.base_url + target, {}) for target in small
                ]
                bodies = [objects.bodies[obj.key] for obj in objects.small]
                problems += await wrong_answers(session, requests, bodies)
                (large,) = links(sign, [objects.large], 1)
                problem = await download(
                    session, peer.base_url + large, objects.large.size, objects.large.sha256
                )
                if problem is not None:
                    problems.append(f"{objects.large.key}: {problem}")
                compared += len(small) + 1
            if problems:
                wrong[name] = problems
    return wrong, compared


def cold_pool_size(rate: float, profile: Profile) -> int:
    """Objects enough for every cold run of one path at `rate`, with a margin."""
    expected = rate * profile.cold_seconds * profile.rounds * COLD_MARGIN
    return min(COLD_POOL_MAX, max(COLD_POOL_MIN, math.ceil(expected)))


def _prepare_cold(
    workdir: Path, s3: S3Server, signers: Signers, count: int
) -> dict[tuple[str, str], Path]:
    """The cold pool, and a list per path: the no-cache gateway reads it from the start, the
    cache gateway from the end, so that the storage serves mostly objects it has not served
    before to either (the cache gateway never sees one twice: `Results.unserved` checks)."""
    pool = upload_many(s3, "cold/4k", count, 4 * KiB)
    sign = signers.gateway()
    forward = links(sign, pool, count)
    backward = links(sign, pool[::-1], count)
    return {
        ("gateway", "cold-gateway"): write_targets(workdir / "targets-cold-plain.txt", forward),
        ("gateway", "cold-gateway-cache"): write_targets(
            workdir / "targets-cold-cache.txt", backward
        ),
    }


# (i) origin shielding.


async def _many_downloads(base_url: str, targets: Sequence[str], obj: StoredObject) -> int:
    """All `targets` at once; how many came back whole and right."""
    async with client_session(connections=len(targets)) as session:
        problems = await asyncio.gather(
            *(download(session, base_url + target, obj.size, obj.sha256) for target in targets)
        )
    return sum(problem is None for problem in problems)


@contextlib.contextmanager
def _shield_peer(
    name: str,
    workdir: Path,
    s3: S3Server,
    signers: Signers,
    keyring_file: Path,
    extra: Mapping[str, str],
    storage_host: str,
) -> Iterator[tuple[str, Signer]]:
    """A fresh cache peer (empty cache) whose storage is at `storage_host`: its base URL and
    how its links are signed."""
    if name == "gateway-cache":
        endpoint = f"http://{storage_host}"
        with cache_gateway(
            workdir, s3, keyring_file, extra, name="shield-gateway", endpoint_url=endpoint
        ) as gateway:
            yield gateway.url(""), signers.gateway()
    else:
        size = slice_bytes(extra)
        secret = signers.nginx_secret
        with cache_nginx(workdir, storage_host, secret, size, name="shield-nginx") as (proxy, _):
            yield proxy.url(""), signers.nginx()


def shield(
    workdir: Path,
    s3: S3Server,
    signers: Signers,
    keyring_file: Path,
    extra: Mapping[str, str],
    profile: Profile,
) -> list[Shielding]:
    """Each cache in front of a counting forwarder to the storage, a new object, and
    `shield_clients` clients on it at once."""
    obj = upload_random(s3.client(), f"obj/shield-{secrets.token_hex(4)}.bin", profile.shield_size)
    slices = -(-obj.size // slice_bytes(extra))
    found = []
    for name in SHIELD_PEERS:
        with (
            counting_forwarder(("127.0.0.1", s3.port)) as forwarder,
            _shield_peer(name, workdir, s3, signers, keyring_file, extra, forwarder.host) as (
                base_url,
                sign,
            ),
        ):
            targets = links(sign, [obj], profile.shield_clients)
            started = time.perf_counter()
            right = uvloop.run(_many_downloads(base_url, targets, obj))
            seconds = time.perf_counter() - started
            gets = [r for r in forwarder.requests if r.method == "GET" and r.path == obj.path]
            ranges = Counter(r.range or "" for r in gets)
            found.append(
                Shielding(
                    name, obj.size, len(targets), slices, len(gets), dict(ranges), right, seconds
                )
            )
    return found


# Memory.


def _metric(admin_url: str, name: str, label: str) -> int:
    return round(gateway_metrics(admin_url).get((name, label), 0.0))


async def _fill_and_stream(
    base_url: str,
    fill: Sequence[tuple[str, StoredObject]],
    target: str,
    obj: StoredObject,
    pid: int,
) -> tuple[int, int]:
    """Every `fill` object through the gateway, then `obj` twice; (VmHWM after the fill,
    largest sampled VmRSS while streaming)."""
    async with client_session() as session:
        gate = asyncio.Semaphore(DOWNLOADS_AT_ONCE)

        async def one(link: str, item: StoredObject) -> str | None:
            async with gate:
                return await download(session, base_url + link, item.size, item.sha256)

        problems = await asyncio.gather(*(one(link, item) for link, item in fill))
        if any(problems):
            raise BenchError(f"memory fill: {next(p for p in problems if p)}")
        filled = peak_rss(pid)
        async with RssSampler(pid) as sampler:
            for _ in range(2):  # cold (storage to the disk tier), then from the disk tier
                problem = await download(session, base_url + target, obj.size, obj.sha256)
                if problem is not None:
                    raise BenchError(f"memory check, {obj.key}: {problem}")
        return filled, sampler.peak


def measure_memory(
    workdir: Path,
    s3: S3Server,
    signers: Signers,
    keyring_file: Path,
    extra: Mapping[str, str],
    profile: Profile,
    objects: Sequence[StoredObject],
) -> list[CacheMemory]:
    """Per object, a fresh cache gateway (an empty cache directory) with the memory tier
    bounded at `profile.memory_bytes`, filled past that bound, then streaming the object."""
    unit = min(MEMORY_OBJECT, int(extra.get("cache_memory_object_bytes", MEMORY_OBJECT)))
    count = math.ceil(MEMORY_FILL * profile.memory_bytes / unit)
    fill_objects = upload_many(s3, f"mem/{secrets.token_hex(4)}", count, unit)
    settings = {**extra, "cache_memory_bytes": str(profile.memory_bytes)}
    found = []
    sign = signers.gateway()
    for obj in objects:
        name = f"memory-{obj.size // MiB}m"
        with cache_gateway(workdir, s3, keyring_file, settings, name=name) as gateway:
            idle = peak_rss(gateway.pid)
            fill = list(zip(links(sign, fill_objects, count), fill_objects, strict=True))
            (target,) = links(sign, [obj], 1)
            filled, sampled = uvloop.run(
                _fill_and_stream(gateway.url(""), fill, target, obj, gateway.pid)
            )
            admin = gateway.admin_url("")
            found.append(
                CacheMemory(
                    size=obj.size,
                    memory_bound=profile.memory_bytes,
                    memory_held=_metric(admin, "gateway_cache_bytes", "memory"),
                    disk_held=_metric(admin, "gateway_cache_bytes", "disk"),
                    idle_hwm=idle,
                    filled_hwm=filled,
                    peak_hwm=peak_rss(gateway.pid),
                    sampled_rss=sampled,
                )
            )
    return found


def policies(profile: Profile) -> tuple[list[trace.Simulated], int]:
    made = trace.make_trace(profile.trace_requests)
    return trace.compare(made), made.capacity


def run(
    workdir: Path, s3: S3Server, options: Options, *, log: Callable[[str], None] = print
) -> Results:
    """Upload, start the peers, check their answers, load them, then the runs with fresh
    processes; the storage is the caller's (`gateway_load.processes.storage`)."""
    profile = options.profile
    extra = dict(options.settings)
    results = Results(profile, extra)
    log("uploading the objects")
    objects = upload(s3, profile.large_size)
    keyring = Keyring([new_key("bench", Algorithm.HMAC_SHA256, Status.ACTIVE)])
    keyring_file = workdir / "gateway-keyring.json"
    keyring.public_export().save(keyring_file, public_only=True)
    signers = Signers(s3, keyring, secrets.token_urlsafe(24))
    targets = _prepare_targets(workdir, signers, objects, profile)
    assert s3.process is not None
    loader = Loader(s3.process.pid, targets)
    with peers(workdir, s3, keyring_file, signers.nginx_secret, extra) as found:
        log("checking every peer's answers (and filling the caches)")
        results.wrong, results.checked = uvloop.run(check_answers(found, signers, objects))
        plan = Plan(loader, found, results, options.profile_dir)
        if options.only_cold:  # (g) sizes its pool by the no-cache gateway's (e) rate
            log("(e) 4 KiB objects, warm, the gateway without cache only")
            plan.rounds("small", ("gateway",), SMALL_CONNECTIONS, profile.seconds)
        else:
            log("(e) 4 KiB objects, warm")
            plan.rounds("small", WARM_PEERS, SMALL_CONNECTIONS, profile.seconds)
            log("(f) the large object, warm")
            plan.rounds("large", WARM_PEERS, LARGE_CONNECTIONS, profile.seconds)
        reference = results.small["gateway"]
        if not reference.failed:
            results.cold_pool = cold_pool_size(reference.rate, profile)
            log(f"(g) uploading {results.cold_pool:,} new 4 KiB objects")
            cold = _prepare_cold(workdir, s3, signers, results.cold_pool)
            targets.update(cold)
            loader.offsets.update(dict.fromkeys(cold, 0))
            log("(g) cold requests")
            plan.rounds("cold", COLD_PEERS, SMALL_CONNECTIONS, profile.cold_seconds)
    if options.only_cold:
        return results
    log("(i) origin shielding")
    results.shielding = shield(workdir, s3, signers, keyring_file, extra, profile)
    log("memory")
    results.memory = measure_memory(
        workdir, s3, signers, keyring_file, extra, profile, [objects.large, objects.huge]
    )
    log("(h) policy simulation")
    results.policies, results.policy_capacity = policies(profile)
    return results
