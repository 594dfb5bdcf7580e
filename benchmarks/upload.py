"""Upload throughput: a signed PUT through the gateway vs a presigned PUT straight to storage.

    python -m benchmarks.upload [--rounds 3] [--size-mib 256] [--setting NAME=VALUE]

Starts a SeaweedFS S3 server and `gateway serve` (a separate process) on 127.0.0.1, then
uploads the same random body `--rounds` times each way, alternating: directly with a botocore
presigned PutObject URL (one request, the whole body), and through the gateway with a signed
upload link (which the gateway streams into a multipart upload, part by part). Both use one
aiohttp client on uvloop with a Content-Length, and every upload is checked (size, and the
gateway's answer). Prints MiB/s per upload, the median each way, their ratio, and the gateway's
peak RSS (VmHWM) and CPU seconds per GiB.

The client, the storage and the gateway share this machine's cores; direct and gateway uploads
use the same client, so the ratio is fair, the absolute figures lower than on separate hosts.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import aiohttp
import uvloop
from yarl import URL

from benchmarks.gateway_load.measure import cpu_seconds, peak_rss, process_tree
from benchmarks.gateway_load.objects import presigning_client
from signer import Algorithm, Keyring, Status, new_key, sign_path
from tests.servers import S3Server, start_gateway, start_seaweedfs

MiB = 1024 * 1024
BUCKET = "bench"


async def timed_put(session: aiohttp.ClientSession, url: URL | str, body: bytes) -> float:
    started = time.perf_counter()
    async with session.put(url, data=body) as response:
        answer = await response.read()
        if response.status not in (200, 201):
            raise RuntimeError(f"upload answered {response.status}: {answer[:300]!r}")
    return time.perf_counter() - started


async def run(s3: S3Server, workdir: Path, rounds: int, size: int, settings: dict[str, str]) -> int:
    client = presigning_client(s3)
    client.create_bucket(Bucket=BUCKET)
    keyring = Keyring([new_key("bench", Algorithm.HMAC_SHA256, Status.ACTIVE)])
    keyring_file = workdir / "gateway-keyring.json"
    keyring.public_export().save(keyring_file, public_only=True)
    gateway = start_gateway(
        workdir,
        {
            **settings,
            "origin": f"s3://{BUCKET}",
            "s3_endpoint_url": s3.endpoint_url,
            "keyring": str(keyring_file),
            "access_log": "false",
        },
        env=s3.env(),
    )
    body = os.urandom(size)
    rates: dict[str, list[float]] = {"direct": [], "gateway": []}
    gateway_cpu = 0.0
    try:
        connector = aiohttp.TCPConnector(limit=4)
        async with aiohttp.ClientSession(connector=connector) as session:
            for index in range(rounds):
                key = f"round-{index}.bin"
                direct = client.generate_presigned_url(
                    "put_object", Params={"Bucket": BUCKET, "Key": f"direct/{key}"}, ExpiresIn=600
                )
                signed = sign_path(f"/gateway/{key}", keyring, expires_in=600, method="PUT")
                for side, url in (
                    ("direct", URL(direct, encoded=True)),
                    ("gateway", URL(gateway.url(signed), encoded=True)),
                ):
                    cpu_before = cpu_seconds(process_tree(gateway.pid))
                    seconds = await timed_put(session, url, body)
                    if side == "gateway":
                        gateway_cpu += cpu_seconds(process_tree(gateway.pid)) - cpu_before
                    stored = client.head_object(Bucket=BUCKET, Key=f"{side}/{key}")
                    if stored["ContentLength"] != size:
                        raise RuntimeError(f"{side} stored {stored['ContentLength']} bytes")
                    rates[side].append(size / MiB / seconds)
                    print(f"  round {index + 1} {side:8} {rates[side][-1]:8.1f} MiB/s")
        peak = peak_rss(gateway.pid)
    finally:
        gateway.stop()
    direct_median = statistics.median(rates["direct"])
    gateway_median = statistics.median(rates["gateway"])
    part = int(settings.get("upload_part_size", 8 * MiB))
    print(f"\n{rounds} x {size // MiB} MiB, upload_part_size {part // MiB} MiB:")
    print(f"  direct presigned PUT  median {direct_median:8.1f} MiB/s")
    print(f"  through the gateway   median {gateway_median:8.1f} MiB/s")
    print(f"  ratio gateway/direct  {gateway_median / direct_median:.2f}")
    gib = rounds * size / (1024 * MiB)
    print(f"  gateway peak RSS (VmHWM) {peak / MiB:.1f} MiB; CPU {gateway_cpu / gib:.2f} s/GiB")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--size-mib", type=int, default=256)
    parser.add_argument("--setting", action="append", default=[], metavar="NAME=VALUE")
    args = parser.parse_args(argv)
    settings = dict(item.split("=", 1) for item in args.setting)
    with tempfile.TemporaryDirectory(prefix="upload-bench-") as directory:
        workdir = Path(directory)
        s3 = start_seaweedfs(workdir)
        try:
            return uvloop.run(run(s3, workdir, args.rounds, args.size_mib * MiB, settings))
        finally:
            s3.stop()


if __name__ == "__main__":
    raise SystemExit(main())
