"""The load benchmark (benchmarks/gateway_load): its reading of wrk, and its verdicts."""

from __future__ import annotations

import hashlib
import json
import math
from base64 import urlsafe_b64decode
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from benchmarks.gateway_load.limits import LimitResults, limits_exit_status, limits_report
from benchmarks.gateway_load.measure import (
    BenchError,
    Load,
    WakeProbe,
    WrkRun,
    loadable,
    on_loopback,
    parse_wrk,
)
from benchmarks.gateway_load.measure import run_wrk as run_wrk_once
from benchmarks.gateway_load.objects import Signers, StoredObject, links, nginx_token
from benchmarks.gateway_load.processes import TLS_PEER
from benchmarks.gateway_load.report import exit_status, queue_p99, report, summary
from benchmarks.gateway_load.run import FULL, QUICK, Measured, Memory, Profile, Results, Row
from benchmarks.gateway_load.wake_probe import percentiles
from signer import Algorithm, Keyring, Status, new_key
from tests.servers import S3Server

counts = st.integers(min_value=0, max_value=2**40)

WRK_TEXT = """\
Running 5s test @ http://127.0.0.1:9000
  1 threads and 32 connections
  {requests} requests in 5.00s, 20.00MB read
{non_2xx}Requests/sec:   1000.00
WRK_JSON {json}
"""


def wrk_output(found: dict[str, int], printed_non_2xx: int | None) -> str:
    line = "" if printed_non_2xx is None else f"  Non-2xx or 3xx responses: {printed_non_2xx}\n"
    return WRK_TEXT.format(requests=found["requests"], non_2xx=line, json=json.dumps(found))


@given(
    requests=counts,
    size=counts,
    duration=st.integers(min_value=1, max_value=2**40),
    errors=st.tuples(counts, counts, counts, counts, counts),
    p50=counts,
    p99=counts,
)
def test_parse_wrk_reads_every_counter_of_the_done_line(
    requests: int,
    size: int,
    duration: int,
    errors: tuple[int, int, int, int, int],
    p50: int,
    p99: int,
) -> None:
    connect, read, write, status, timeout = errors
    found = {
        "duration_us": duration,
        "requests": requests,
        "bytes": size,
        "connect": connect,
        "read": read,
        "write": write,
        "status": status,
        "timeout": timeout,
        "p50_us": p50,
        "p99_us": p99,
    }
    parsed = parse_wrk(wrk_output(found, None))
    assert parsed == WrkRun(
        requests=requests,
        bytes=size,
        seconds=duration / 1e6,
        p50=p50 / 1e6,
        p99=p99 / 1e6,
        non_2xx=status,
        socket_errors=connect + read + write + timeout,
    )


def clean_run(**changes: int) -> dict[str, int]:
    found = dict.fromkeys(("connect", "read", "write", "status", "timeout"), 0)
    found.update(duration_us=1_000_000, requests=100, bytes=409_600, p50_us=500, p99_us=900)
    found.update(changes)
    return found


@pytest.mark.parametrize(("in_json", "printed"), [(0, 7), (7, None), (7, 7), (3, 7)])
def test_non_2xx_responses_count_whether_printed_or_in_the_done_line(
    in_json: int, printed: int | None
) -> None:
    assert parse_wrk(wrk_output(clean_run(status=in_json), printed)).non_2xx == 7


@pytest.mark.parametrize(
    ("changes", "failed"),
    [
        ({}, False),
        ({"status": 1}, True),  # a fast 403 is not a fast 200
        ({"connect": 1}, True),
        ({"read": 1}, True),
        ({"write": 1}, True),
        ({"timeout": 1}, True),
        ({"requests": 0}, True),
    ],
)
def test_a_run_with_any_failed_request_is_failed(changes: dict[str, int], failed: bool) -> None:
    assert parse_wrk(wrk_output(clean_run(**changes), None)).failed is failed


def test_output_without_the_done_line_is_a_harness_error() -> None:
    with pytest.raises(BenchError, match="WRK_JSON"):
        parse_wrk("unable to connect to 127.0.0.1:9000 Connection refused\n")


@pytest.mark.parametrize(
    ("url", "allowed"),
    [
        ("http://127.0.0.1:9000", True),
        ("http://127.0.0.1:9000/", True),
        ("https://127.0.0.1:9000", False),
        ("http://10.0.0.1:9000", False),
        ("http://example.com:9000", False),
        ("http://127.0.0.1.example.com:9000", False),
        ("http://user@127.0.0.1:9000", False),
        ("http://127.0.0.1", False),
        ("http://127.0.0.1:9000/elsewhere", False),
    ],
)
def test_loads_target_loopback_only(url: str, allowed: bool) -> None:
    assert on_loopback(url) is allowed


@pytest.mark.parametrize(
    ("url", "allowed"),
    [
        ("http://127.0.0.1:9000", True),
        ("https://127.0.0.1:9443", True),
        ("https://10.0.0.1:9443", False),
        ("https://127.0.0.1:9443/elsewhere", False),
        ("ftp://127.0.0.1:9000", False),
    ],
)
def test_loads_may_also_go_over_tls_to_loopback_only(url: str, allowed: bool) -> None:
    assert loadable(url) is allowed


def test_wrk_is_not_started_against_another_host(tmp_path: Path) -> None:
    with pytest.raises(BenchError, match=r"127\.0\.0\.1 only"):
        run_wrk_once(Load("http://192.168.1.1:80", tmp_path / "targets", 1, 1))


def test_nginx_token_is_the_url_safe_md5_of_expiry_uri_and_secret() -> None:
    query = nginx_token("/bench/obj/a.bin", 1_790_000_000, "s3cret")
    md5, expires = (part.partition("=")[2] for part in query.split("&"))
    assert expires == "1790000000"
    wanted = hashlib.md5(b"1790000000/bench/obj/a.bin s3cret", usedforsecurity=False).digest()
    assert urlsafe_b64decode(md5 + "==") == wanted
    assert not set(md5) & set("=+/")


@pytest.mark.parametrize("scheme", ["direct", "gateway", "nginx"])
def test_links_cycle_over_the_objects_each_with_its_own_token(scheme: str) -> None:
    signers = Signers(
        S3Server("http://127.0.0.1:9000", "access", "secret"),
        Keyring([new_key("k", Algorithm.HMAC_SHA256, Status.ACTIVE)]),
        "nginx-secret",
    )
    objects = [StoredObject(f"obj/{i}.bin", 4096, "") for i in range(4)]
    found = links(signers.by_scheme(scheme), objects, 64)
    assert len(set(found)) == 64
    paths = [target.partition("?")[0] for target in found]
    assert all(path.endswith(f"/obj/{i % 4}.bin") for i, path in enumerate(paths))


def row(name: str, requests: int, *, seconds: float = 1.0, non_2xx: int = 0) -> Row:
    run = WrkRun(requests, requests * 4096, seconds, 0.001, 0.002, non_2xx, 0)
    cpu = {"wrk": 0.01, "storage": 0.1}
    if name != "direct":
        cpu["proxy"] = 50e-6 * requests
    return Row(name, [Measured(run, cpu)])


def results(profile: Profile, gateway_requests: int, non_2xx: int = 0) -> Results:
    found = Results(profile, {})
    found.small = {
        "direct": row("direct", 1000),
        "gateway-1": row("gateway-1", gateway_requests, non_2xx=non_2xx),
    }
    return found


@pytest.mark.parametrize(
    ("profile", "gateway_requests", "non_2xx", "status"),
    [
        (FULL, 900, 0, 0),  # every target met
        (FULL, 100, 0, 1),  # 0.1x direct: a target failed
        (QUICK, 100, 0, 0),  # quick runs judge no target
        (FULL, 900, 5, 2),  # a run with failed requests measured nothing
        (QUICK, 900, 5, 2),
    ],
)
def test_exit_status(profile: Profile, gateway_requests: int, non_2xx: int, status: int) -> None:
    assert exit_status(results(profile, gateway_requests, non_2xx)) == status


def test_a_wrong_answer_means_nothing_was_measured() -> None:
    found = results(FULL, 900)
    found.wrong = {"nginx": ["status 403, 150 of 4096 bytes expected"]}
    assert exit_status(found) == 2


def test_the_small_ratio_and_the_gateway_cpu_per_request_are_summarised() -> None:
    rows = {
        measure: (figure, verdict) for measure, figure, _, verdict in summary(results(FULL, 500))
    }
    assert rows["(a) 4 KiB req/s, 1 worker / direct"] == ("0.50x", "FAIL")
    assert rows["(a) gateway CPU per 4 KiB request"] == ("50 µs", "PASS")


def test_latency_percentiles_are_the_median_over_rounds() -> None:
    """One run hit by a noisy neighbour does not decide the added latency."""
    runs = [WrkRun(100, 409_600, 1.0, p50, p99, 0, 0) for p50, p99 in [(1, 3), (2, 90), (9, 2)]]
    paced = Row("gateway-1", [Measured(run, {}) for run in runs])
    assert (paced.p50, paced.p99) == (2, 3)


def with_tls(requests: int, mib_per_second: float) -> Results:
    """A full run's results with the one-worker gateway over TLS beside plain HTTP."""
    found = results(FULL, 900)
    found.small[TLS_PEER] = row(TLS_PEER, requests)
    seconds = 1.0
    found.large = {
        name: Row(name, [Measured(WrkRun(1, round(rate * 2**20), seconds, 0, 0, 0, 0), {})])
        for name, rate in (("direct", 1000.0), ("gateway-1", 900.0), (TLS_PEER, mib_per_second))
    }
    return found


def test_what_tls_costs_is_reported_as_ratios_to_plain_http() -> None:
    rows = {
        measure: (figure, verdict) for measure, figure, _, verdict in summary(with_tls(450, 600))
    }
    assert rows["(a) 4 KiB req/s, 1 worker: TLS / plain HTTP"] == ("0.50x", "reported")
    assert rows["(b) 256 MiB MiB/s, 1 worker: TLS / plain HTTP"] == ("0.67x", "reported")


def test_without_tls_no_tls_figure_is_reported() -> None:
    assert not [row for row in summary(results(FULL, 900)) if "TLS" in row[0]]


@pytest.mark.parametrize(("growth", "verdict", "status"), [(1, "PASS", 0), (64, "FAIL", 1)])
def test_memory_over_tls_must_stay_flat_too(growth: int, verdict: str, status: int) -> None:
    found = with_tls(900, 900)
    mib = 2**20
    found.tls_memory = [Memory(256 * mib, 80 * mib, 90 * mib, 90 * mib)]
    found.tls_memory.append(Memory(1024 * mib, 80 * mib, (90 + growth) * mib, 90 * mib))
    rows = {measure: verdict for measure, _, _, verdict in summary(found)}
    assert rows["(d) peak RSS over TLS, 1024 MiB vs 256 MiB"] == verdict
    assert exit_status(found) == status


def paced_row(name: str, requests: int, p50: float, p99: float, non_2xx: int = 0) -> Row:
    run = WrkRun(requests, requests * 4096, 1.0, p50, p99, non_2xx, 0)
    return Row(name, [Measured(run, {"wrk": 0.01, "storage": 0.1, "proxy": 0.2})])


def test_the_limits_report_gives_what_a_limit_adds_per_store() -> None:
    found = LimitResults(QUICK)
    for store, base in (("sqlite", 1000), ("redis", 2000)):
        found.rows[(store, "unlimited")] = paced_row(store, base, 0.010, 0.020)
        found.rows[(store, "limited")] = paced_row(store, base // 2, 0.012, 0.025)
    lines = limits_report(found)
    assert lines[3].split() == ["sqlite", "limited", "500", "12.00", "25.00", "+2.00", "+5.00",
                                "x0.50"]  # fmt: skip
    assert lines[5].split()[-3:] == ["+2.00", "+5.00", "x0.50"]
    assert limits_exit_status(found) == 0


def test_a_limited_run_with_refusals_measured_nothing() -> None:
    found = LimitResults(QUICK)
    for store in ("sqlite", "redis"):
        found.rows[(store, "unlimited")] = paced_row(store, 1000, 0.01, 0.02)
        found.rows[(store, "limited")] = paced_row(store, 1000, 0.01, 0.02, non_2xx=3)
    assert limits_exit_status(found) == 2
    assert "FAILED: 3 non-2xx" in "\n".join(limits_report(found))


def paced_results(gateway_p99: float, wake_p99: float | None) -> Results:
    """Direct at p99 2 ms, nginx at 3 ms, the gateway at `gateway_p99`; the host's wake-up
    lateness meanwhile (None: the probe gave nothing)."""
    found = results(FULL, 900)

    def paced(name: str, p99: float) -> Row:
        return Row(name, [Measured(WrkRun(100, 409_600, 1.0, 0.001, p99, 0, 0), {})])

    found.paced = {
        "direct": paced("direct", 0.002),
        "gateway-1": paced("gateway-1", gateway_p99),
        "nginx": paced("nginx", 0.003),
    }
    found.wake = None if wake_p99 is None else {"p50": 0.0, "p99": wake_p99, "samples": 1000}
    return found


@pytest.mark.parametrize(
    ("gateway_p99", "wake_p99", "verdict"),
    [
        (0.0025, 0.0002, "PASS"),  # a quiet host: judged
        (0.0090, 0.0002, "FAIL"),
        (0.0090, None, "FAIL"),  # no probe figures: judged as before
        (0.0090, 0.0040, "not judged (host wake-up p99 4.0 ms)"),  # a busy host: not judged
        (0.0025, 0.0040, "not judged (host wake-up p99 4.0 ms)"),
    ],
)
def test_added_p99_is_judged_only_on_a_host_that_wakes_within_the_target(
    gateway_p99: float, wake_p99: float | None, verdict: str
) -> None:
    rows = {m: (f, v) for m, f, _, v in summary(paced_results(gateway_p99, wake_p99))}
    figure, found = rows["(c) added p99 at half load, 1 worker"]
    assert found == verdict
    assert figure == f"{(gateway_p99 - 0.002) * 1e3:+.2f} ms (nginx +1.00)"


def test_a_latency_not_judged_is_no_failure() -> None:
    assert exit_status(paced_results(0.0090, 0.0040)) == 0


@given(st.lists(st.floats(min_value=0, max_value=1), min_size=1, max_size=300))
def test_wake_probe_percentiles_are_the_nearest_rank(lateness: list[float]) -> None:
    found = percentiles(lateness)
    assert found["samples"] == len(lateness)
    for name, share in (("p50", 0.50), ("p99", 0.99)):
        assert found[name] in lateness
        assert sum(v <= found[name] for v in lateness) >= share * len(lateness)
        assert sum(v < found[name] for v in lateness) < share * len(lateness)


def test_the_wake_probe_reports_once_its_stdin_closes() -> None:
    with WakeProbe() as probe:
        pass
    assert probe.figures is not None
    assert probe.figures["p99"] >= probe.figures["p50"] >= 0


@pytest.mark.parametrize(
    ("requests", "cpu_per_request", "busy", "p99_ms"),
    [
        (1000, 200e-6, 0.2, math.log(100) * 0.2 / 0.8),  # 1,000 req/s at 200 µs: 20 % busy
        (1500, 200e-6, 0.3, math.log(100) * 0.2 / 0.7),
        (100, 50e-6, 0.005, math.log(100) * 0.05 / 0.995),
    ],
)
def test_a_paced_proxy_is_modelled_as_one_m_m_1_queue(
    requests: int, cpu_per_request: float, busy: float, p99_ms: float
) -> None:
    run = WrkRun(requests, requests * 4096, 1.0, 0.001, 0.002, 0, 0)
    paced = Row("gateway-1", [Measured(run, {"proxy": cpu_per_request * requests})])
    found = queue_p99(paced)
    assert found is not None
    assert found[0] == pytest.approx(busy)
    assert found[1] * 1e3 == pytest.approx(p99_ms)


def test_a_saturated_proxy_queues_without_bound() -> None:
    run = WrkRun(1000, 4_096_000, 1.0, 0.001, 0.002, 0, 0)
    assert queue_p99(Row("gateway-1", [Measured(run, {"proxy": 1.5})])) == (1.5, math.inf)


def test_storage_direct_has_no_proxy_to_model() -> None:
    assert queue_p99(row("direct", 1000)) is None


def test_the_latency_table_says_what_queueing_alone_adds_per_proxy() -> None:
    found = results(FULL, 900)
    found.paced_rate = 450.0
    found.paced = {"direct": row("direct", 450), "gateway-1": row("gateway-1", 450)}
    text = "\n".join(report(found, []))
    assert "gateway, 1 worker as one M/M/1 queue: 2% busy at 50 µs CPU per request" in text
    assert "storage direct (presigned) as one M/M/1" not in text
