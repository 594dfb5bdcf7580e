"""The command line of `python -m benchmarks.cache_load`.

`--quick` proves the harness in about a minute (the test suite runs it); the full run is
`make cache-bench`. `--setting NAME=VALUE` passes another gateway setting to every gateway of
the run (see `gateway settings`), e.g. cache_slice_bytes=1048576 (nginx's slices follow it).
`--profile DIR` records the cache gateway with py-spy during its timed runs. `--only g` runs
the cold requests (g) alone.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import aiohttp

from benchmarks.cache_load.peers import TTL, slice_bytes
from benchmarks.cache_load.report import exit_status, report
from benchmarks.cache_load.run import FULL, QUICK, Options, Results, run
from benchmarks.gateway_load import processes
from benchmarks.gateway_load.cli import _version, missing_tools, parse_setting
from benchmarks.gateway_load.measure import BenchError
from tests.servers import ServerError, nginx_binary

# Set by the harness for the cache gateway (cache, cache_dir), besides gateway_load's own.
CACHE_HARNESS_SETTINGS = frozenset(("cache", "cache_dir"))


def _setting(text: str) -> tuple[str, str]:
    name, value = parse_setting(text)
    if name in CACHE_HARNESS_SETTINGS:
        raise argparse.ArgumentTypeError(f"{name}: set by the harness itself")
    return name, value


def parse_args(argv: Sequence[str] | None) -> Options:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.cache_load",
        description="The edge cache beside storage direct and nginx proxy_cache, with wrk.",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="1 s per run, small objects: proves the harness, judges no timed target",
    )
    parser.add_argument(
        "--setting",
        type=_setting,
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="another gateway setting, e.g. cache_slice_bytes=1048576 (repeatable)",
    )
    parser.add_argument(
        "--profile",
        type=Path,
        metavar="DIR",
        help="record the cache gateway with py-spy during its timed runs, into DIR",
    )
    parser.add_argument(
        "--only",
        choices=["g"],
        help="g: only the cold requests (g), after the no-cache gateway's (e) rate that sizes "
        "its pool; nothing else is measured or judged",
    )
    args = parser.parse_args(argv)
    if args.profile is not None and args.profile.exists() and not args.profile.is_dir():
        parser.error(f"--profile {args.profile}: not a directory")
    return Options(
        profile=QUICK if args.quick else FULL,
        settings=dict(args.setting),
        profile_dir=args.profile,
        only_cold=args.only == "g",
    )


def header(results: Results, load: tuple[float, float]) -> list[str]:
    """The run's setting; `load` is the host's 1-minute load average at its start and end."""
    wrk = _version(["wrk", "-v"]).split(" [")[0]
    nginx = _version([nginx_binary() or "nginx", "-v"]).rpartition(":")[2].strip()
    size = slice_bytes(results.settings)
    lines = [
        f"cache benchmark ({results.profile.name})",
        f"  host:    {os.cpu_count()} CPUs shared by wrk, storage and peers; "
        f"Python {platform.python_version()}, aiohttp {aiohttp.__version__}",
        f"  load:    1-minute load average {load[0]:.1f} at the start, {load[1]:.1f} at the end "
        "(all processes of the host)",
        f"  tools:   {wrk}; {nginx}; SeaweedFS S3 on 127.0.0.1",
        "  gateway: `gateway serve`, 1 worker, as deployed (access log, metrics, revocation on);",
        f"           cache on: GATEWAY_CACHE=true, its directory in a temporary directory, "
        f"slices of {size // 1024} KiB, TTL {TTL} s",
        f"  nginx:   secure_link, proxy_cache + slice {size // 1024}k, proxy_cache_lock, "
        f"sendfile; fresh {TTL} s",
    ]
    lines += [f"  setting: GATEWAY_{k.upper()}={v}" for k, v in results.settings.items()]
    return lines


def main(argv: Sequence[str] | None = None) -> int:
    options = parse_args(argv)
    missing = missing_tools()
    if missing:
        print(
            "cache_load: install the Debian packages " + " ".join(missing) + " first "
            "(scripts/bootstrap.sh does, as root)",
            file=sys.stderr,
        )
        return 2
    if options.profile_dir is not None:
        options.profile_dir.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    load_at_start = os.getloadavg()[0]

    def log(text: str) -> None:
        print(f"[{time.monotonic() - started:5.0f} s] {text}", file=sys.stderr, flush=True)

    try:
        with (
            tempfile.TemporaryDirectory(prefix="cache-load-") as tmp,
            processes.storage(Path(tmp)) as s3,
        ):
            results = run(Path(tmp), s3, options, log=log)
    except (BenchError, ServerError, aiohttp.ClientError, TimeoutError) as exc:
        print(f"cache_load: error: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("cache_load: interrupted; servers stopped", file=sys.stderr)
        return 130
    print("\n".join(report(results, header(results, (load_at_start, os.getloadavg()[0])))))
    print(f"\ntotal time {time.monotonic() - started:.0f} s")
    return exit_status(results)
