"""The report of a cache run: a table per measure, then a summary of the targets (issue 17,
one worker). Timed targets are judged by full runs only; (h) and (i) are counts, not timings,
and are judged in every run. Exit status: 0 when every target passes, 1 when one fails, 2
when something could not be measured (a failed request, a wrong answer, a warm run the cache
did not answer, a cold run it did, a server that did not start).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Final

from benchmarks.cache_load.peers import LABELS
from benchmarks.cache_load.run import (
    LARGE_CONNECTIONS,
    SMALL_CONNECTIONS,
    CacheMemory,
    Results,
)
from benchmarks.cache_load.trace import OBJECTS, SCAN_OBJECTS, Tally
from benchmarks.gateway_load.measure import GiB, MiB
from benchmarks.gateway_load.report import (
    PARTIES,
    RSS_SLACK_FRACTION,
    RSS_SLACK_MIN,
    cpu_cells,
    failure,
    table,
)
from benchmarks.gateway_load.run import Row

WARM_SMALL_TARGET: Final = 2.0  # (e) gateway cache / storage direct
WARM_LARGE_TARGET: Final = 1.5  # (f) gateway cache / storage direct
WARM_LARGE_NGINX_TARGET: Final = 0.8  # (f) gateway cache / nginx proxy_cache
COLD_NOISE: Final = 0.10  # (g) "no worse within noise": at least 0.9x the no-cache path
CACHED: Final = "gateway-cache"


def _ratio(row: Row | None, base: Row | None, figure: Callable[[Row], float]) -> float | None:
    if row is None or base is None or row.failed or base.failed or not figure(base):
        return None
    return figure(row) / figure(base)


def _states(results: Results, kind: str, name: str) -> str:
    states = results.states.get((kind, name))
    if states is None:
        return "-"
    wanted = "miss" if kind == "cold" else "hit"
    total = sum(states.values())
    return f"{states.get(wanted, 0)}/{total}"


def load_table(
    results: Results,
    kind: str,
    unit: str,
    figure: Callable[[Row], float],
    cpu_unit: str,
    per: str,
    base: str,
) -> list[str]:
    """Figure and ratio to `base` per path, CPU per unit of work of each party, and how many
    timed requests the cache answered as meant (hits warm, misses cold)."""
    rows: Mapping[str, Row] = getattr(results, kind)
    column = "misses" if kind == "cold" else "cache hits"
    found = [["path", unit, "ratio", f"CPU {cpu_unit}: wrk", "storage", "proxy", "cores", column]]
    for name, row in rows.items():
        if row.failed:
            found.append([LABELS[name], failure(row), "", "", "", "", "", ""])
            continue
        ratio = _ratio(row, rows.get(base), figure)
        work = row.requests if per == "request" else row.bytes / GiB
        scale = work / (1e6 if per == "request" else 1e3)
        busy = sum(row.cpu(p) or 0.0 for p in PARTIES) / row.seconds
        found.append(
            [
                LABELS[name],
                f"{figure(row):,.0f}",
                "-" if ratio is None else f"{ratio:.2f}",
                *cpu_cells(row, scale),
                f"{busy:.1f}",
                _states(results, kind, name),
            ]
        )
    return table(found)


def _percent(tally: Tally) -> str:
    return f"{100 * tally.ratio:.1f} %"


def policy_table(results: Results) -> list[str]:
    found = [["policy", "hit ratio", "byte hit ratio", "before scan", "just after", "after"]]
    for simulated in results.policies:
        found.append(
            [
                simulated.policy,
                _percent(simulated.total),
                f"{100 * simulated.total.byte_ratio:.1f} %",
                _percent(simulated.before),
                _percent(simulated.recovery),
                _percent(simulated.after),
            ]
        )
    return table(found)


def shield_table(results: Results) -> list[str]:
    found = [["path", "clients", "slices", "storage GETs", "most of one range", "right", "s"]]
    for shielding in results.shielding:
        found.append(
            [
                LABELS[shielding.peer],
                str(shielding.clients),
                str(shielding.slices),
                str(shielding.gets),
                str(shielding.most),
                f"{shielding.right}/{shielding.clients}",
                f"{shielding.seconds:.1f}",
            ]
        )
    return table(found)


def mib(value: float) -> str:
    return f"{value / MiB:.0f} MiB"


def memory_table(memory: Sequence[CacheMemory]) -> list[str]:
    found = [
        [
            "object",
            "memory tier",
            "disk tier",
            "VmHWM idle",
            "after memory fill",
            "after streams",
            "max VmRSS",
        ]
    ]
    for m in memory:
        found.append(
            [
                mib(m.size),
                f"{mib(m.memory_held)} of {mib(m.memory_bound)}",
                mib(m.disk_held),
                mib(m.idle_hwm),
                mib(m.filled_hwm),
                mib(m.peak_hwm),
                mib(m.sampled_rss),
            ]
        )
    return table(found)


def memory_flat(small: CacheMemory, large: CacheMemory) -> tuple[bool, int, int]:
    """(flat?, growth, allowed growth) of the peak VmHWM from the 1x to the 4x object."""
    growth = large.peak_hwm - small.peak_hwm
    allowed = max(RSS_SLACK_MIN, round(RSS_SLACK_FRACTION * small.peak_hwm))
    return growth <= allowed, growth, allowed


def report(results: Results, header: Sequence[str]) -> list[str]:
    """Every table of a run, then the summary."""
    profile = results.profile
    rounds = f"{profile.rounds} round{'s' if profile.rounds > 1 else ''}"
    plan = f"{rounds} x {profile.seconds} s per path, alternating"
    lines = [*header, ""]
    lines.append(f"(e) 4 KiB objects, caches warm: wrk -t1 -c{SMALL_CONNECTIONS}, {plan}")
    lines += load_table(
        results, "small", "req/s", lambda r: r.rate, "µs per request", "request", "direct"
    )
    lines.append("")
    if results.large:
        lines.append(
            f"(f) {mib(profile.large_size)} object, caches warm (disk tier): "
            f"wrk -t1 -c{LARGE_CONNECTIONS}, {plan}"
        )
        lines += load_table(
            results, "large", "MiB/s", lambda r: r.mib_per_second, "ms per GiB", "GiB", "direct"
        )
        lines.append("")
    if results.cold:
        lines.append(
            f"(g) cold 4 KiB requests: wrk -t1 -c{SMALL_CONNECTIONS}, {rounds} x "
            f"{profile.cold_seconds} s per path, alternating;\n"
            f"    each request a new object (a pool of {results.cold_pool:,}, read from both "
            "ends); ratio to the gateway without cache"
        )
        lines += load_table(
            results, "cold", "req/s", lambda r: r.rate, "µs per request", "request", "gateway"
        )
        lines.append("")
    if results.policies:
        lines.append(
            f"(h) hit ratio, simulated: Zipf(1) over {OBJECTS:,} objects, "
            f"{profile.trace_requests:,} requests with a scan of {SCAN_OBJECTS:,} new objects\n"
            f"    in the middle; cache {mib(results.policy_capacity)} (10 % of the bytes); "
            f"'just after': the {SCAN_OBJECTS:,} requests after the scan"
        )
        lines += policy_table(results)
        lines.append("")
    if results.shielding:
        first = results.shielding[0]
        lines.append(
            f"(i) origin shielding: {first.clients} clients at once on one cold "
            f"{mib(first.size)} object; GETs counted at the storage"
        )
        lines += shield_table(results)
        lines.append("")
    if results.memory:
        lines.append(
            "memory: a fresh cache gateway per object; the memory tier filled past its bound,\n"
            "    then the object streamed cold and again from the disk tier (SHA-256 checked)"
        )
        lines += memory_table(results.memory)
        lines.append("")
    lines.append("summary")
    lines += table(
        [["measure", "figure", "target", "result"]]
        + [[*cells, verdict] for *cells, verdict in summary(results)],
        indent="  ",
    )
    for peer, problems in results.wrong.items():
        lines += [f"  wrong answer via {LABELS[peer]}: {problem}" for problem in problems[:5]]
    lines += [f"  not answered as meant: {problem}" for problem in results.unserved()]
    return lines


def _verdict(results: Results, ok: bool, *, timed: bool = True) -> str:
    if timed and not results.profile.judged:
        return "not judged (quick)"
    return "PASS" if ok else "FAIL"


def _ratio_row(
    results: Results, measure: str, ratio: float | None, target: float
) -> tuple[str, str, str, str] | None:
    if ratio is None or math.isnan(ratio):
        return None
    return (measure, f"{ratio:.2f}x", f">= {target}x", _verdict(results, ratio >= target))


def summary(results: Results) -> list[tuple[str, str, str, str]]:
    """(measure, figure, target, verdict) rows."""
    found: list[tuple[str, str, str, str] | None] = []
    small, large = results.small, results.large
    rate: Callable[[Row], float] = lambda r: r.rate  # noqa: E731
    speed: Callable[[Row], float] = lambda r: r.mib_per_second  # noqa: E731
    found.append(
        _ratio_row(
            results,
            "(e) 4 KiB warm req/s, cache / direct",
            _ratio(small.get(CACHED), small.get("direct"), rate),
            WARM_SMALL_TARGET,
        )
    )
    size = mib(results.profile.large_size)
    found.append(
        _ratio_row(
            results,
            f"(f) {size} warm MiB/s, cache / direct",
            _ratio(large.get(CACHED), large.get("direct"), speed),
            WARM_LARGE_TARGET,
        )
    )
    found.append(
        _ratio_row(
            results,
            f"(f) {size} warm MiB/s, cache / nginx",
            _ratio(large.get(CACHED), large.get("nginx-cache"), speed),
            WARM_LARGE_NGINX_TARGET,
        )
    )
    found.append(
        _ratio_row(
            results,
            "(g) cold req/s, cache / no cache",
            _ratio(results.cold.get(CACHED), results.cold.get("gateway"), rate),
            round(1 - COLD_NOISE, 2),
        )
    )
    policies = {simulated.policy: simulated for simulated in results.policies}
    fifo, lru = policies.get("S3-FIFO"), policies.get("LRU")
    if fifo is not None and lru is not None:
        for part in ("total", "recovery"):
            ours, theirs = getattr(fifo, part).ratio, getattr(lru, part).ratio
            what = "hit ratio" if part == "total" else "hit ratio just after the scan"
            found.append(
                (
                    f"(h) {what}, S3-FIFO vs LRU",
                    f"{100 * ours:.1f} vs {100 * theirs:.1f} %",
                    ">= LRU",
                    _verdict(results, ours >= theirs, timed=False),
                )
            )
    for shielding in results.shielding:
        found.append(
            (
                f"(i) storage GETs, {LABELS[shielding.peer]}",
                f"{shielding.gets} (most {shielding.most} of a range)",
                f"{shielding.slices}: each slice once",
                _verdict(results, shielding.each_slice_once, timed=False),
            )
        )
    if len(results.memory) == 2:
        ok, growth, allowed = memory_flat(*results.memory)
        big, small_one = results.memory[1], results.memory[0]
        found.append(
            (
                f"memory: peak RSS, {mib(big.size)} vs {mib(small_one.size)}",
                f"{growth / MiB:+.1f} MiB",
                f"flat (<= +{allowed / MiB:.0f} MiB)",
                _verdict(results, ok),
            )
        )
    rows = [row for row in found if row is not None]
    wrong = sum(len(problems) for problems in results.wrong.values())
    rows.append(
        (
            "answers checked before timing",
            f"{wrong} wrong",
            f"0 of {results.checked}",
            "PASS" if not wrong else "FAIL",
        )
    )
    unserved = results.unserved()
    rows.append(
        (
            "timed runs the caches answered as meant",
            f"{len(results.states) - len(unserved)} of {len(results.states)}",
            "all",
            "PASS" if not unserved else "FAIL",
        )
    )
    failed = [row for row in results.rows() if row.failed]
    rows.append(("wrk runs with failed requests", str(len(failed)), "0", _ok(not failed)))
    return rows


def _ok(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


def exit_status(results: Results) -> int:
    """2 if something could not be measured, else 1 if a judged target failed, else 0."""
    unmeasured = (
        results.wrong
        or results.unserved()
        or any(row.failed for row in results.rows())
        or any(s.right != s.clients for s in results.shielding)
    )
    if unmeasured:
        return 2
    return 1 if any(verdict == "FAIL" for *_, verdict in summary(results)) else 0
