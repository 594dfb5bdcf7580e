"""What the cache's slice size trades: a seek's wait against a stream's speed.

    python -m benchmarks.slice_size [--sizes 1,4,16] [--object-mib 256]

One SeaweedFS, one object; for each slice size (MiB) fresh `gateway serve` processes with the
cache on in a new directory, read by curl (a C client):
  cold stream   the whole object, nothing cached: MiB/s (one read)
  warm stream   the same again, from the disk tier: MiB/s (median of 3)
  cold seek     64 KiB at 5 offsets spread over the object, each in a slice not yet cached
                (another gateway, its own directory): time to the first byte, median
A cold seek fetches its slice from the slice's start, so its first byte waits for the bytes
before it (half a slice on average): longer with larger slices. A stream makes one storage
request per slice: more of them, and more files, with smaller ones.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import tempfile
from collections.abc import Sequence
from pathlib import Path

from signer import Algorithm, Keyring, Status, new_key, sign_path
from tests.servers import GatewayProcess, S3Server, seaweedfs, start_gateway

MiB = 1024 * 1024
BUCKET = "slices"
KEY = "film.bin"
SEEK = 64 * 1024


def curl(url: str, byte_range: str | None = None) -> tuple[float, float, int]:
    """(seconds to the first byte, seconds in all, bytes) of one GET by curl."""
    written = "%{time_starttransfer} %{time_total} %{size_download} %{http_code}"
    command = ["curl", "-s", "-o", "/dev/null", "-w", written, "--noproxy", "*"]
    if byte_range is not None:
        command += ["-H", f"Range: bytes={byte_range}"]
    first, total, size, status = subprocess.run(
        [*command, url], capture_output=True, text=True, check=True
    ).stdout.split()
    if status not in ("200", "206"):
        raise RuntimeError(f"{url.partition('?')[0]}: HTTP {status}")
    return float(first), float(total), int(size)


def gateway(
    workdir: Path, s3: S3Server, keyring: Path, slice_mib: int, name: str
) -> GatewayProcess:
    settings = {
        "origin": f"s3://{BUCKET}/",
        "keyring": str(keyring),
        "s3_endpoint_url": s3.endpoint_url,
        "cache": "true",
        "cache_dir": str(workdir / f"cache-{name}"),
        "cache_slice_bytes": str(slice_mib * MiB),
        "access_log": "false",
        "log_level": "WARNING",
    }
    return start_gateway(workdir, settings, env=s3.env(), name=name)


def measure(sizes: Sequence[int], object_mib: int) -> list[tuple[int, float, float, float]]:
    keyring = Keyring([new_key("bench", Algorithm.HMAC_SHA256, Status.ACTIVE)])
    size = object_mib * MiB
    rows = []
    with tempfile.TemporaryDirectory(prefix="slice-bench-") as tmp, seaweedfs(Path(tmp)) as s3:
        workdir = Path(tmp)
        exported = workdir / "gateway-keyring.json"
        keyring.public_export().save(exported, public_only=True)
        client = s3.client()
        client.create_bucket(Bucket=BUCKET)
        client.put_object(Bucket=BUCKET, Key=KEY, Body=os.urandom(size))
        target = sign_path(f"/{KEY}", keyring, expires_in=3600)
        for slice_mib in sizes:
            streams = gateway(workdir, s3, exported, slice_mib, f"stream-{slice_mib}")
            seeks = gateway(workdir, s3, exported, slice_mib, f"seek-{slice_mib}")
            try:
                _, cold, got = curl(streams.url(target))
                warm = [curl(streams.url(target))[1] for _ in range(3)]
                if got != size:
                    raise RuntimeError(f"read {got} of {size} bytes")
                offsets = [round(size * (index + 0.5) / 5) for index in range(5)]
                waits = [curl(seeks.url(target), f"{at}-{at + SEEK - 1}")[0] for at in offsets]
            finally:
                streams.stop()
                seeks.stop()
            rows.append(
                (
                    slice_mib,
                    object_mib / cold,
                    object_mib / statistics.median(warm),
                    statistics.median(waits) * 1000,
                )
            )
    return rows


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.slice_size", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--sizes", default="1,4,16", help="slice sizes in MiB, comma-separated")
    parser.add_argument("--object-mib", type=int, default=256)
    args = parser.parse_args(argv)
    sizes = [int(part) for part in args.sizes.split(",")]
    rows = measure(sizes, args.object_mib)
    print(f"slice size: one {args.object_mib} MiB object on SeaweedFS, curl, 1 worker per gateway")
    print("    slice   cold stream MiB/s   warm stream MiB/s   cold seek, first byte ms")
    for slice_mib, cold, warm, wait in rows:
        print(f"  {slice_mib:4d} MiB   {cold:17.0f}   {warm:17.0f}   {wait:24.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
