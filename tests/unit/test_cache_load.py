"""The cache benchmark (benchmarks/cache_load): its request counting, its trace and policy
simulation, and its verdicts."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from benchmarks.cache_load import trace
from benchmarks.cache_load.cli import parse_args
from benchmarks.cache_load.counting import HeadError, HeadReader, Request
from benchmarks.cache_load.peers import CachePeer
from benchmarks.cache_load.report import exit_status, report, summary
from benchmarks.cache_load.run import (
    COLD_POOL_MAX,
    COLD_POOL_MIN,
    FULL,
    QUICK,
    Plan,
    Profile,
    Results,
    Shielding,
    StateCounter,
    cold_pool_size,
)
from benchmarks.gateway_load.measure import Load, WrkRun
from benchmarks.gateway_load.processes import Peer
from benchmarks.gateway_load.run import Loader, Measured, Row
from gateway.cache.policy import Lru

# -- counting the requests a cache sends to the storage ---------------------------------------

tokens = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789-._~/%", min_size=1, max_size=40)
ranges = st.builds(lambda a, b: f"bytes={a}-{a + b}", st.integers(0), st.integers(0))
requests = st.builds(
    lambda method, path, query, byte_range, body: (
        Request(method, "/" + path + (f"?{query}" if query else ""), byte_range),
        body,
    ),
    st.sampled_from(["GET", "HEAD", "PUT"]),
    tokens,
    st.one_of(st.just(""), tokens),
    st.one_of(
        st.none(), st.builds(lambda a, b: f"bytes={a}-{a + b}", st.integers(0), st.integers(0))
    ),
    st.binary(max_size=300),
)


def wire(request: Request, body: bytes) -> bytes:
    head = f"{request.method} {request.target} HTTP/1.1\r\nHost: 127.0.0.1:9000\r\n"
    if request.range is not None:
        head += f"Range: {request.range}\r\n"
    if body:
        head += f"Content-Length: {len(body)}\r\n"
    return head.encode() + b"\r\n" + body


@given(sent=st.lists(requests, max_size=8), cuts=st.lists(st.integers(0, 4000), max_size=12))
def test_every_request_is_read_once_however_the_stream_is_cut(
    sent: list[tuple[Request, bytes]], cuts: list[int]
) -> None:
    stream = b"".join(wire(request, body) for request, body in sent)
    reader, found, start = HeadReader(), [], 0
    for cut in sorted(min(cut, len(stream)) for cut in cuts):
        found += reader.feed(stream[start:cut])
        start = cut
    found += reader.feed(stream[start:])
    assert found == [request for request, _ in sent]


def test_a_request_is_counted_once_its_head_is_complete() -> None:
    reader = HeadReader()
    assert reader.feed(b"GET /bench/a.bin HTTP/1.1\r\nRange: bytes=0-9\r\n") == []
    assert reader.feed(b"\r\n") == [Request("GET", "/bench/a.bin", "bytes=0-9")]


@pytest.mark.parametrize(
    "stream",
    [
        b"PUT /a HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n",
        b"GET /a HTTP/1.1\r\nContent-Length: many\r\n\r\n",
        b"GET /a\r\n\r\n",
        b"GET /a HTTP/1.1\r\nno colon here\r\n\r\n",
        b"GET /" + b"a" * (65 * 1024),
    ],
    ids=["chunked body", "bad length", "no version", "bad header", "endless head"],
)
def test_a_stream_it_cannot_read_is_refused(stream: bytes) -> None:
    with pytest.raises(HeadError):
        HeadReader().feed(stream)


# -- (h): the trace and the simulation ----------------------------------------------------


@pytest.fixture(scope="module")
def small_trace() -> trace.Trace:
    return trace.make_trace(20_000)


def test_the_scan_is_new_objects_each_asked_for_once_in_the_middle(
    small_trace: trace.Trace,
) -> None:
    start, end = small_trace.scan
    assert (start, end) == (10_000, 10_000 + trace.SCAN_OBJECTS)
    scan = small_trace.requests[start:end]
    assert sorted(scan) == list(range(trace.OBJECTS, trace.OBJECTS + trace.SCAN_OBJECTS))
    rest = small_trace.requests[:start] + small_trace.requests[end:]
    assert len(rest) == 20_000
    assert all(0 <= key < trace.OBJECTS for key in rest)


def test_popularity_follows_zipf_and_not_the_object_ids(small_trace: trace.Trace) -> None:
    start, end = small_trace.scan
    counts = Counter(small_trace.requests[:start] + small_trace.requests[end:])
    ranked = [count for _, count in counts.most_common()]
    # Rank 1 is asked for 1/H(10000), about 10 %, of the time; rank 10 a tenth of that.
    assert 0.08 < ranked[0] / 20_000 < 0.12
    assert 6 < ranked[0] / ranked[9] < 14
    assert counts.most_common(1)[0][0] != 0  # ranks are shuffled over the ids


@pytest.mark.parametrize("alpha", [0.5, 1.0, 2.0])
def test_the_sampler_draws_rank_k_in_proportion_to_one_over_k_to_the_alpha(alpha: float) -> None:
    import random

    draw = trace.zipf_sampler(4, alpha, random.Random(1))
    counts = Counter(draw() for _ in range(40_000))
    weights = [1 / (k + 1) ** alpha for k in range(4)]
    for rank in range(4):
        expected = 40_000 * weights[rank] / sum(weights)
        assert abs(counts[rank] - expected) < 0.05 * expected + 100


def test_a_trace_is_the_same_for_a_seed_and_differs_for_another() -> None:
    assert trace.make_trace(1000).requests == trace.make_trace(1000).requests
    assert trace.make_trace(1000).requests != trace.make_trace(1000, seed=18).requests


def test_sizes_stay_within_their_bounds_and_the_cache_holds_a_tenth_of_the_bytes(
    small_trace: trace.Trace,
) -> None:
    sizes = small_trace.sizes.values()
    assert all(trace.MIN_SIZE <= size <= trace.MAX_SIZE for size in sizes)
    zipf_bytes = sum(small_trace.sizes[i] for i in range(trace.OBJECTS))
    assert small_trace.capacity == round(zipf_bytes / 10)


def test_simulate_counts_hits_and_bytes_and_splits_them_around_the_scan() -> None:
    # Objects 0 and 1 are asked for twice before the scan, object 9 is the scan, then 0 again.
    made = trace.Trace(requests=[0, 1, 0, 1, 9, 0], sizes={0: 10, 1: 20, 9: 30}, scan=(4, 5))
    found = trace.simulate("LRU", Lru[int](30), made)
    assert (found.total.requests, found.total.hits) == (6, 2)
    assert (found.total.bytes, found.total.hit_bytes) == (100, 30)
    assert (found.before.requests, found.before.hits) == (4, 2)
    assert (found.after.requests, found.after.hits) == (1, 0)  # the scan flushed LRU
    assert found.recovery == found.after


def test_s3_fifo_keeps_more_hits_than_lru_through_the_scan(small_trace: trace.Trace) -> None:
    fifo, lru = trace.compare(small_trace)
    assert (fifo.policy, lru.policy) == ("S3-FIFO", "LRU")
    assert fifo.recovery.ratio > lru.recovery.ratio
    assert fifo.total.ratio > lru.total.ratio


# -- cache outcomes and verdicts --------------------------------------------------------


def test_nginx_outcomes_are_counted_from_its_cache_log(tmp_path: Path) -> None:
    log = tmp_path / "cache.log"
    log.write_text("MISS\nHIT\n")
    counter = StateCounter(CachePeer(Peer("nginx-cache", "nginx", "http://127.0.0.1:1"), None, log))
    counter.start()
    with log.open("a") as more:
        more.write("HIT\nHIT\nMISS\n-\n")
    assert counter.stop() == {"hit": 2, "miss": 1, "-": 1}


@pytest.mark.parametrize(
    ("rate", "profile", "expected"),
    [
        (1000.0, FULL, 9000),  # 1000 req/s x 2 s x 3 rounds x 1.5
        (10.0, FULL, COLD_POOL_MIN),
        (1e6, FULL, COLD_POOL_MAX),
        (1000.0, QUICK, 1500),
    ],
)
def test_the_cold_pool_outlasts_one_paths_cold_runs(
    rate: float, profile: Profile, expected: int
) -> None:
    assert cold_pool_size(rate, profile) == expected


class CountingLoader(Loader):
    """Answers every run with 100 requests, moving its list on as the real one does."""

    def measure(self, peer: Peer, load: Load, kind: str) -> Measured:
        self.offsets[(peer.scheme, kind)] += 100
        return Measured(WrkRun(100, 409_600, 1.0, 0.001, 0.002, 0, 0), {})


@pytest.mark.parametrize(("kind", "offset"), [("small", 2 * 100), ("cold", 2 * (100 + 32))])
def test_a_cold_run_starts_past_the_requests_the_last_one_sent_but_did_not_count(
    tmp_path: Path, kind: str, offset: int
) -> None:
    peer = Peer("gateway-cache", "gateway", "http://127.0.0.1:1", pid=1)
    list_kind = "cold-gateway-cache" if kind == "cold" else kind
    loader = CountingLoader(1, {("gateway", list_kind): tmp_path / "targets"})
    plan = Plan(loader, {}, Results(QUICK, {}), None)
    for _ in range(2):
        plan._measure(peer, kind, connections=32, seconds=1)
    assert loader.offsets[("gateway", list_kind)] == offset


def row(name: str, requests: int, *, size: int = 4096, non_2xx: int = 0) -> Row:
    run = WrkRun(requests, requests * size, 1.0, 0.001, 0.002, non_2xx, 0)
    cpu = {"wrk": 0.01, "storage": 0.1}
    if name != "direct":
        cpu["proxy"] = 0.2
    return Row(name, [Measured(run, cpu)])


def results(profile: Profile, *, cached: int = 2500, cold: int = 950) -> Results:
    """Every measure present; the cache gateway's (e) and (g) request counts as given."""
    found = Results(profile, {})
    found.small = {
        "direct": row("direct", 1000),
        "gateway": row("gateway", 600),
        "gateway-cache": row("gateway-cache", cached),
        "nginx-cache": row("nginx-cache", 9000),
    }
    found.large = {
        name: row(name, count, size=256 << 20)
        for name, count in [("direct", 2), ("gateway", 2), ("gateway-cache", 4), ("nginx-cache", 4)]
    }
    found.cold = {"gateway": row("gateway", 1000), "gateway-cache": row("gateway-cache", cold)}
    found.states = {
        ("small", "gateway-cache"): {"hit": cached},
        ("large", "nginx-cache"): {"hit": 4},
        ("cold", "gateway-cache"): {"miss": cold},
    }
    found.shielding = [Shielding("gateway-cache", 64 << 20, 100, 16, 16, {"r": 1}, 100, 1.0)]
    return found


@pytest.mark.parametrize(
    ("profile", "cached", "cold", "status"),
    [
        (FULL, 2500, 950, 0),  # every target met (0.95x cold is within the noise)
        (FULL, 1500, 950, 1),  # 1.5x direct for 4 KiB: short of 2x
        (FULL, 2500, 800, 1),  # cold 0.8x the no-cache path
        (QUICK, 1500, 800, 0),  # quick runs judge no timed target
    ],
)
def test_exit_status_judges_timed_targets_in_full_runs_only(
    profile: Profile, cached: int, cold: int, status: int
) -> None:
    assert exit_status(results(profile, cached=cached, cold=cold)) == status


@pytest.mark.parametrize(
    ("states", "problem"),
    [
        ({("small", "gateway-cache"): {"hit": 10, "miss": 1}}, "small via gateway-cache"),
        ({("cold", "gateway-cache"): {"miss": 10, "hit": 1}}, "cold via gateway-cache"),
        ({("large", "nginx-cache"): {}}, "large via nginx-cache"),
    ],
    ids=["a warm run that missed", "a cold run that hit", "a run the cache never saw"],
)
def test_a_run_the_cache_did_not_answer_as_meant_measured_nothing(
    states: dict[tuple[str, str], dict[str, int]], problem: str
) -> None:
    found = results(QUICK)
    found.states.update(states)
    assert any(line.startswith(problem) for line in found.unserved())
    assert exit_status(found) == 2


def test_a_slice_fetched_twice_fails_shielding_even_in_a_quick_run() -> None:
    found = results(QUICK)
    found.shielding = [Shielding("gateway-cache", 8 << 20, 32, 2, 3, {"a": 2, "b": 1}, 32, 1.0)]
    verdicts = {measure: verdict for measure, _, _, verdict in summary(found)}
    assert verdicts["(i) storage GETs, gateway, cache on"] == "FAIL"
    assert exit_status(found) == 1


def test_a_client_that_got_a_wrong_answer_while_shielding_measured_nothing() -> None:
    found = results(FULL)
    found.shielding = [Shielding("gateway-cache", 64 << 20, 100, 16, 16, {"r": 1}, 99, 1.0)]
    assert exit_status(found) == 2


@pytest.mark.parametrize(("argv", "only_cold"), [([], False), (["--only", "g"], True)])
def test_only_g_runs_the_cold_requests_alone(argv: list[str], only_cold: bool) -> None:
    assert parse_args(argv).only_cold is only_cold


@pytest.mark.parametrize(("cold", "verdict"), [(950, "PASS"), (800, "FAIL")])
def test_a_run_of_g_alone_judges_g_alone(cold: int, verdict: str) -> None:
    found = results(FULL, cold=cold)
    found.small = {"gateway": found.small["gateway"]}  # the rate that sizes the cold pool
    found.large, found.shielding = {}, []
    found.states = {("cold", "gateway-cache"): {"miss": cold}}
    judged = {measure: result for measure, _, _, result in summary(found) if "(" in measure}
    text = "\n".join(report(found, []))
    assert judged == {"(g) cold req/s, cache / no cache": verdict}
    assert "(f)" not in text
