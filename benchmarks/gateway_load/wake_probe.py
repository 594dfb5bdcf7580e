"""How late this host wakes a process that asked to sleep 1 ms, until its stdin closes.

Why: (c) compares each path's p99 with the storage direct's, and every hop a path adds is one
more process to wake. On a host whose cores other work keeps busy, a woken process waits its
turn, and that wait, not the proxy, is what a p99 of a few ms then shows (nginx's as much as
the gateway's). The harness runs this beside the paced runs and reports the lateness; a (c)
taken while it exceeds the target is not judged. Prints one line of JSON: the percentiles in
seconds and how many sleeps they are over.
"""

from __future__ import annotations

import json
import math
import select
import sys
import time
from collections.abc import Sequence
from typing import Final

SLEEP: Final = 0.001


def percentiles(lateness: Sequence[float]) -> dict[str, float]:
    """p50 and p99 of the lateness samples (seconds) by nearest rank: the smallest sample that
    at least that share of them do not exceed; zeros for none."""
    ordered = sorted(lateness)
    count = len(ordered)

    def rank(share: float) -> float:
        return ordered[max(0, math.ceil(share * count) - 1)] if count else 0.0

    return {"p50": rank(0.50), "p99": rank(0.99), "samples": count}


def main() -> None:
    lateness: list[float] = []
    stdin = sys.stdin.fileno()
    while True:
        started = time.perf_counter()
        readable, _, _ = select.select([stdin], [], [], SLEEP)  # stdin: only its end comes
        if readable:
            break
        lateness.append(max(0.0, time.perf_counter() - started - SLEEP))
    print(json.dumps(percentiles(lateness)), flush=True)


if __name__ == "__main__":
    main()
