"""The report: one table per load with ratios to the storage direct, then a summary of targets.

Targets are issue 16's, for one gateway worker (2 cores, 4 KiB objects, no cache, wrk -c32).
Only full runs judge them; a quick run is too short for figures and only shows the harness
works. The exit status: 0 when every target passes, 1 when one fails, 2 when something could
not be measured (a run with failed requests, a wrong answer, a server that did not start).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Final

from benchmarks.gateway_load.measure import GiB, MiB
from benchmarks.gateway_load.processes import LABELS as PLAIN_LABELS
from benchmarks.gateway_load.processes import TLS_LABELS, TLS_PEER
from benchmarks.gateway_load.run import (
    LARGE_CONNECTIONS,
    SMALL_CONNECTIONS,
    Memory,
    Results,
    Row,
)

SMALL_RATIO_TARGET: Final = 0.6
SMALL_CPU_TARGET: Final = 200e-6  # gateway CPU seconds per 4 KiB request
LARGE_RATIO_TARGET: Final = 0.85
ADDED_P99_TARGET: Final = 1e-3  # seconds of p99 latency added at half load
# "Flat": streaming a 4x larger object may raise the peak RSS by at most this much.
RSS_SLACK_FRACTION: Final = 0.10
RSS_SLACK_MIN: Final = 8 * MiB
PARTIES: Final = ("wrk", "storage", "proxy")
REFERENCE: Final = "gateway-1"
LABELS: Final = {**PLAIN_LABELS, **TLS_LABELS}


def table(rows: Sequence[Sequence[str]], indent: str = "    ") -> list[str]:
    """Columns padded to their widest cell; the first column left-aligned, the others right."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = []
    for row in rows:
        cells = [row[0].ljust(widths[0])]
        cells += [cell.rjust(width) for cell, width in zip(row[1:], widths[1:], strict=True)]
        lines.append(indent + "  ".join(cells).rstrip())
    return lines


def failure(row: Row) -> str:
    if not row.runs:
        return "FAILED: not run"
    return f"FAILED: {row.non_2xx} non-2xx or 3xx, {row.socket_errors} socket errors"


def cpu_cells(row: Row, per: float) -> list[str]:
    """Each party's CPU time per request (or per GiB), scaled by `per`; '-' where absent."""
    cells = []
    for party in PARTIES:
        seconds = row.cpu(party)
        cells.append("-" if seconds is None or not per else f"{seconds / per:.0f}")
    return cells


def load_table(
    rows: Mapping[str, Row], unit: str, figure: Callable[[Row], float], cpu_unit: str, per: str
) -> list[str]:
    """Figure and ratio to direct per peer, and CPU per unit of work of each party."""
    direct = rows.get("direct")
    base = figure(direct) if direct is not None and not direct.failed else math.nan
    found = [["path", unit, "ratio", f"CPU {cpu_unit}: wrk", "storage", "proxy", "cores"]]
    for name, row in rows.items():
        if row.failed:
            found.append([LABELS[name], failure(row), "", "", "", "", ""])
            continue
        value = figure(row)
        work = row.requests if per == "request" else row.bytes / GiB
        scale = work / (1e6 if per == "request" else 1e3)
        busy = sum(row.cpu(p) or 0.0 for p in PARTIES) / row.seconds
        cpu = cpu_cells(row, scale)
        found.append([LABELS[name], f"{value:,.0f}", f"{value / base:.2f}", *cpu, f"{busy:.1f}"])
    return table(found)


def paced_table(rows: Mapping[str, Row]) -> list[str]:
    direct = rows.get("direct")
    found = [["path", "req/s", "p50 ms", "p99 ms", "added p50", "added p99"]]
    for name, row in rows.items():
        if row.failed:
            found.append([LABELS[name], failure(row), "", "", "", ""])
            continue
        cells = [LABELS[name], f"{row.rate:,.0f}", f"{row.p50 * 1e3:.2f}", f"{row.p99 * 1e3:.2f}"]
        if direct is None or direct.failed:
            cells += ["", ""]
        else:
            cells += [
                f"{(row.p50 - direct.p50) * 1e3:+.2f}",
                f"{(row.p99 - direct.p99) * 1e3:+.2f}",
            ]
        found.append(cells)
    return table(found)


def memory_flat(small: Memory, large: Memory) -> tuple[bool, int, int]:
    """(flat?, growth, allowed growth) of the peak VmHWM from the 1x to the 4x object."""
    growth = large.peak_hwm - small.peak_hwm
    allowed = max(RSS_SLACK_MIN, round(RSS_SLACK_FRACTION * small.peak_hwm))
    return growth <= allowed, growth, allowed


def mib(value: float) -> str:
    return f"{value / MiB:.0f} MiB"


def memory_table(memory: Sequence[Memory], tls_memory: Sequence[Memory] = ()) -> list[str]:
    found = [["object", "VmHWM idle", "VmHWM after", "max VmRSS"]]
    for m, over in [(m, "") for m in memory] + [(m, ", TLS") for m in tls_memory]:
        cells = [mib(m.idle_hwm), mib(m.peak_hwm), mib(m.sampled_rss)]
        found.append([mib(m.size) + over, *cells])
    return table(found)


def queue_p99(row: Row) -> tuple[float, float] | None:
    """(utilisation, p99 seconds) of a path's proxy as one M/M/1 queue: its own CPU per
    request S as the service time, busy for a share rho = rate x S, where a request's time in
    the system is exponential with mean S / (1 - rho), so its p99 is ln(100) S / (1 - rho).
    The floor a single-threaded proxy puts under its added p99 at that load, whatever the
    host does; None without a proxy or its CPU."""
    cpu = row.cpu("proxy")
    if cpu is None or not row.requests or not row.seconds:
        return None
    service = cpu / row.requests
    busy = row.rate * service
    if busy >= 1:
        return busy, math.inf
    return busy, math.log(100) * service / (1 - busy)


def report(results: Results, header: Sequence[str]) -> list[str]:
    """Every table of a run, then the summary."""
    profile = results.profile
    rounds = f"{profile.rounds} round{'s' if profile.rounds > 1 else ''}"
    plan = f"{rounds} x {profile.seconds} s per path, alternating"
    lines = [*header, ""]
    lines.append(f"(a) 4 KiB GETs: wrk -t1 -c{SMALL_CONNECTIONS}, {plan}")
    lines += load_table(results.small, "req/s", lambda r: r.rate, "µs per request", "request")
    lines.append("")
    lines.append(f"(b) {mib(profile.large_size)} object: wrk -t1 -c{LARGE_CONNECTIONS}, {plan}")
    lines += load_table(results.large, "MiB/s", lambda r: r.mib_per_second, "ms per GiB", "GiB")
    lines.append("")
    if results.paced:
        lines.append(
            f"(c) latency at half load: {results.paced_rate:,.0f} req/s offered to every path "
            f"(half of {LABELS[REFERENCE]}'s (a)),\n    wrk paced at random intervals, "
            f"{rounds} x {profile.latency_seconds} s per path, alternating;\n"
            "    percentiles: the median of the rounds'; added = path - direct"
        )
        lines += paced_table(results.paced)
        if results.wake is not None:
            wake = results.wake
            lines.append(
                f"    meanwhile the host woke a process sleeping 1 ms (`wake_probe`) "
                f"{wake['p50'] * 1e3:.2f} ms late at p50,\n    {wake['p99'] * 1e3:.2f} ms at p99, "
                f"over {wake['samples']:,.0f} sleeps: each hop a path adds waits like that"
            )
        for name, row in results.paced.items():
            modelled = queue_p99(row)
            if modelled is not None and not row.failed:
                busy, p99 = modelled
                lines.append(
                    f"    {LABELS[name]} as one M/M/1 queue: {busy:.0%} busy at "
                    f"{(row.cpu('proxy') or 0) / row.requests * 1e6:.0f} µs CPU per request, "
                    f"p99 in it {p99 * 1e3:.2f} ms"
                )
        lines.append("")
    if results.memory:
        lines.append(
            "(d) gateway memory: a fresh gateway per object streams it once to a Python client\n"
            "    checking its SHA-256; largest VmHWM / sampled VmRSS over its processes"
        )
        lines += memory_table(results.memory, results.tls_memory)
        lines.append("")
    lines.append("summary")
    lines += table(
        [["measure", "figure", "target", "result"]]
        + [[*cells, verdict] for *cells, verdict in summary(results)],
        indent="  ",
    )
    for peer, problems in results.wrong.items():
        lines += [f"  wrong answer via {LABELS[peer]}: {problem}" for problem in problems[:5]]
    return lines


def _judged(results: Results, ok: bool) -> str:
    if not results.profile.judged:
        return "not judged (quick)"
    return "PASS" if ok else "FAIL"


def _latency_judged(results: Results, ok: bool) -> str:
    """(c) is judged only on a host that wakes a sleeper within the target: past that, the
    host's own wake-up delay, paid once more per hop, is what a p99 difference shows."""
    wake = results.wake
    if results.profile.judged and wake is not None and wake["p99"] > ADDED_P99_TARGET:
        return f"not judged (host wake-up p99 {wake['p99'] * 1e3:.1f} ms)"
    return _judged(results, ok)


def summary(results: Results) -> list[tuple[str, str, str, str]]:
    """(measure, figure, target, verdict) rows."""
    rows: list[tuple[str, str, str, str]] = []
    small, large = results.small, results.large
    gateway, direct = small.get(REFERENCE), small.get("direct")
    if gateway and direct and not (gateway.failed or direct.failed):
        ratio = gateway.rate / direct.rate
        target = f">= {SMALL_RATIO_TARGET}x"
        verdict = _judged(results, ratio >= SMALL_RATIO_TARGET)
        rows.append(("(a) 4 KiB req/s, 1 worker / direct", f"{ratio:.2f}x", target, verdict))
        per_request = (gateway.cpu("proxy") or 0.0) / gateway.requests
        rows.append(
            (
                "(a) gateway CPU per 4 KiB request",
                f"{per_request * 1e6:.0f} µs",
                f"<= {SMALL_CPU_TARGET * 1e6:.0f} µs",
                _judged(results, per_request <= SMALL_CPU_TARGET),
            )
        )
    gateway, direct = large.get(REFERENCE), large.get("direct")
    if gateway and direct and not (gateway.failed or direct.failed):
        ratio = gateway.mib_per_second / direct.mib_per_second
        rows.append(
            (
                f"(b) {mib(results.profile.large_size)} MiB/s, 1 worker / direct",
                f"{ratio:.2f}x",
                f">= {LARGE_RATIO_TARGET}x",
                _judged(results, ratio >= LARGE_RATIO_TARGET),
            )
        )
    gateway, direct = results.paced.get(REFERENCE), results.paced.get("direct")
    if gateway and direct and not (gateway.failed or direct.failed):
        added = gateway.p99 - direct.p99
        figure = f"{added * 1e3:+.2f} ms"
        nginx = results.paced.get("nginx")
        if nginx is not None and not nginx.failed:
            figure += f" (nginx {(nginx.p99 - direct.p99) * 1e3:+.2f})"
        rows.append(
            (
                "(c) added p99 at half load, 1 worker",
                figure,
                f"<= {ADDED_P99_TARGET * 1e3:.0f} ms",
                _latency_judged(results, added <= ADDED_P99_TARGET),
            )
        )
    rows += tls_rows(results)
    for memory, over in ((results.memory, ""), (results.tls_memory, " over TLS")):
        if len(memory) == 2:
            ok, growth, allowed = memory_flat(*memory)
            rows.append(
                (
                    f"(d) peak RSS{over}, {mib(memory[1].size)} vs {mib(memory[0].size)}",
                    f"{growth / MiB:+.1f} MiB",
                    f"flat (<= +{allowed / MiB:.0f} MiB)",
                    _judged(results, ok),
                )
            )
    wrong = sum(len(problems) for problems in results.wrong.values())
    rows.append(
        (
            "answers checked before timing",
            f"{wrong} wrong",
            f"0 of {results.checked}",
            "PASS" if not wrong else "FAIL",
        )
    )
    failed = [row for row in results.rows() if row.failed]
    rows.append(
        (
            "wrk runs with failed requests",
            f"{len(failed)}",
            "0",
            "PASS" if not failed else "FAIL",
        )
    )
    return rows


def tls_rows(results: Results) -> list[tuple[str, str, str, str]]:
    """What TLS costs the one-worker gateway in this run: its figures over TLS as ratios to
    plain HTTP's. No target: they are reported (docs/gateway.md, TLS)."""
    rows = []
    figures: list[tuple[str, Mapping[str, Row], Callable[[Row], float]]] = [
        ("(a) 4 KiB req/s", results.small, lambda r: r.rate),
        (f"(b) {mib(results.profile.large_size)} MiB/s", results.large, lambda r: r.mib_per_second),
    ]
    for kind, measured, figure in figures:
        plain, tls = measured.get(REFERENCE), measured.get(TLS_PEER)
        if plain and tls and not (plain.failed or tls.failed):
            ratio = figure(tls) / figure(plain)
            rows.append((f"{kind}, 1 worker: TLS / plain HTTP", f"{ratio:.2f}x", "-", "reported"))
    return rows


def exit_status(results: Results) -> int:
    """2 if something could not be measured, else 1 if a judged target failed, else 0."""
    if results.wrong or any(row.failed for row in results.rows()):
        return 2
    return 1 if any(verdict == "FAIL" for *_, verdict in summary(results)) else 0
