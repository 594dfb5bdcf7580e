"""The command line of `python -m benchmarks.gateway_load`.

`--quick` proves the harness in well under a minute (the test suite runs it); the full run
is `make load`. `--tls` adds the one-worker gateway over TLS to (a), (b) and (d), and what
TLS costs it as ratios to plain HTTP (about a minute more in a full run).
`--setting NAME=VALUE` passes another gateway setting (see `gateway settings`), e.g.
chunk_size=1048576. `--profile DIR` records the one-worker gateway with py-spy during its
timed runs (`pip install py-spy`); sampling costs CPU, so such a run's
figures are a little lower. `--limits` measures only what a usage limit costs a request
(`benchmarks/gateway_load/limits.py`): limited vs unlimited links, embedded store and Valkey;
`make load` does not run it.
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import ssl
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import aiohttp

from benchmarks.gateway_load import processes
from benchmarks.gateway_load.measure import BenchError, wrk_binary
from benchmarks.gateway_load.report import exit_status, report
from benchmarks.gateway_load.run import FULL, QUICK, Options, Results, run
from tests.servers import ServerError, nginx_binary


def parse_setting(text: str) -> tuple[str, str]:
    name, sep, value = text.partition("=")
    name = name.strip().lower().removeprefix("gateway_")
    if not sep or not re.fullmatch(r"[a-z][a-z0-9_]*", name):
        raise argparse.ArgumentTypeError(f"{text!r}: must be NAME=VALUE (see `gateway settings`)")
    if name in processes.HARNESS_SETTINGS:
        raise argparse.ArgumentTypeError(f"{name}: set by the harness itself")
    return name, value


def parse_args(argv: Sequence[str] | None) -> Options:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.gateway_load",
        description="Load the gateway and its peers (storage direct, nginx) with wrk.",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="1 s per run, an 8 MiB object: proves the harness, judges no target",
    )
    parser.add_argument(
        "--setting",
        type=parse_setting,
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="another gateway setting, e.g. chunk_size=1048576 (repeatable)",
    )
    parser.add_argument(
        "--tls",
        action="store_true",
        help="also the 1-worker gateway over TLS (self-signed), in (a), (b) and (d)",
    )
    parser.add_argument(
        "--profile",
        type=Path,
        metavar="DIR",
        help="record the one-worker gateway with py-spy during its timed runs, into DIR",
    )
    parser.add_argument(
        "--limits",
        action="store_true",
        help="only this: limited vs unlimited links, with the embedded store and with Valkey",
    )
    args = parser.parse_args(argv)
    if args.profile is not None and args.profile.exists() and not args.profile.is_dir():
        parser.error(f"--profile {args.profile}: not a directory")
    return Options(
        profile=QUICK if args.quick else FULL,
        settings=dict(args.setting),
        profile_dir=args.profile,
        tls=args.tls,
        limits=args.limits,
    )


def missing_tools() -> list[str]:
    """The Debian packages the benchmark needs and this machine lacks."""
    missing = [] if wrk_binary() else ["wrk"]
    return missing + ([] if nginx_binary() else ["nginx-light"])


def _version(command: list[str]) -> str:
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=10, check=False)
    except OSError:
        return "?"
    text = (done.stdout + done.stderr).strip().splitlines()
    return text[0] if text else "?"


def header(results: Results) -> list[str]:
    profile = results.profile
    wrk = _version(["wrk", "-v"]).split(" [")[0]
    nginx = _version([nginx_binary() or "nginx", "-v"]).rpartition(":")[2].strip()
    lines = [
        f"gateway load benchmark ({profile.name})",
        f"  host:    {os.cpu_count()} CPUs shared by wrk, storage and peers; "
        f"Python {platform.python_version()}, aiohttp {aiohttp.__version__}",
        f"  tools:   {wrk}; {nginx}; SeaweedFS S3 on 127.0.0.1",
        "  links:   SigV4 presigned (direct, tcp fwd), HMAC-SHA256 (gateway), secure_link MD5"
        f" (nginx);\n           {profile.links} distinct per path for 4 KiB, made before timing",
        "  gateway: `gateway serve` as deployed: access log, metrics and revocation on",
    ]
    if processes.TLS_PEER in results.small:
        lines.append(
            f"  tls:     {processes.TLS_LABELS[processes.TLS_PEER]}: self-signed ECDSA P-256, "
            f"{ssl.OPENSSL_VERSION} in the gateway; wrk's own OpenSSL"
        )
    lines += [f"  setting: GATEWAY_{k.upper()}={v}" for k, v in results.settings.items()]
    return lines


def main(argv: Sequence[str] | None = None) -> int:
    options = parse_args(argv)
    missing = missing_tools()
    if missing:
        print(
            "gateway_load: install the Debian packages " + " ".join(missing) + " first "
            "(scripts/bootstrap.sh does, as root)",
            file=sys.stderr,
        )
        return 2
    if options.profile_dir is not None:
        options.profile_dir.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    if options.limits:
        return _limits(options, started)
    try:
        with (
            tempfile.TemporaryDirectory(prefix="gateway-load-") as tmp,
            processes.storage(Path(tmp)) as s3,
        ):
            results = run(Path(tmp), s3, options)
    except (BenchError, ServerError, aiohttp.ClientError, TimeoutError) as exc:
        print(f"gateway_load: error: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("gateway_load: interrupted; servers stopped", file=sys.stderr)
        return 130
    print("\n".join(report(results, header(results))))
    print(f"\ntotal time {time.monotonic() - started:.0f} s")
    return exit_status(results)


def _limits(options: Options, started: float) -> int:
    """`--limits`: the cost of a usage limit, alone."""
    from benchmarks.gateway_load.limits import limits_exit_status, limits_report, run_limits

    try:
        with (
            tempfile.TemporaryDirectory(prefix="gateway-load-") as tmp,
            processes.storage(Path(tmp)) as s3,
        ):
            results = run_limits(Path(tmp), s3, options.profile, options.settings)
    except (BenchError, ServerError, aiohttp.ClientError, TimeoutError) as exc:
        print(f"gateway_load: error: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 2
    print("\n".join(limits_report(results)))
    print(f"\ntotal time {time.monotonic() - started:.0f} s")
    return limits_exit_status(results)
