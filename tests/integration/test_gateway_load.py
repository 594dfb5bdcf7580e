"""The load benchmark against real servers: its quick run, its peers, and its launchers.

The quick run (about 25 s) proves the harness measures every path; it judges no target, as its
runs are too short for figures (`make load` runs the full one). wrk and nginx are Debian
packages; without them these tests skip, saying which.
"""

from __future__ import annotations

import secrets
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from benchmarks.gateway_load import processes
from benchmarks.gateway_load.measure import Load, MiB, run_wrk, wrk_binary
from benchmarks.gateway_load.objects import (
    BUCKET,
    Signers,
    StoredObject,
    ensure_bucket,
    links,
    nginx_token,
    write_targets,
)
from benchmarks.gateway_load.report import exit_status, report
from benchmarks.gateway_load.run import QUICK, Options, Results, run
from signer import Algorithm, Keyring, Status, new_key
from tests.alone import alone
from tests.servers import (
    S3Server,
    ServerError,
    gateway_serve,
    nginx,
    nginx_binary,
    start_gateway,
    start_nginx,
)

pytestmark = pytest.mark.integration

TOOLS_MISSING = wrk_binary() is None or nginx_binary() is None
TOOLS = (
    "needs wrk and nginx: Debian packages wrk and nginx-light "
    "(scripts/bootstrap.sh installs them when run as root)"
)
needs_tools = pytest.mark.skipif(TOOLS_MISSING, reason=TOOLS)
DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))
SMALL_PEERS = ["direct", "gateway-1", "gateway-2", "nginx"]


def answer(url: str, method: str = "GET", body: bytes | None = None) -> tuple[int, bytes]:
    request = urllib.request.Request(url, method=method, data=body)
    try:
        with DIRECT.open(request, timeout=10) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


@pytest.fixture(scope="module")
def storage(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    """The benchmark's storage: private, but for anonymous reads of its bucket."""
    with processes.storage(tmp_path_factory.mktemp("load-s3")) as server:
        yield server


@pytest.fixture(scope="module")
def quick(storage: S3Server, tmp_path_factory: pytest.TempPathFactory) -> Results:
    """One quick run of the whole benchmark; it creates the bucket and its objects."""
    if TOOLS_MISSING:
        pytest.skip(TOOLS)
    with alone():  # its figures size its own later runs: no neighbour's load in between
        return run(tmp_path_factory.mktemp("load"), storage, Options(QUICK))


@needs_tools
@pytest.mark.parametrize(
    ("kind", "peers"),
    [("small", SMALL_PEERS), ("large", [*SMALL_PEERS, "tcp-fwd"]), ("paced", SMALL_PEERS)],
)
def test_the_quick_run_loads_every_path(quick: Results, kind: str, peers: list[str]) -> None:
    rows = getattr(quick, kind)
    assert list(rows) == peers
    for name, row in rows.items():
        assert not row.failed, (name, row.non_2xx, row.socket_errors)
        assert row.requests > 0
        parties = {"wrk", "storage"} | ({"proxy"} if name != "direct" else set())
        assert all(set(m.cpu) == parties for m in row.runs)


@needs_tools
def test_every_answer_checked_before_timing_was_right(quick: Results) -> None:
    assert quick.wrong == {}
    assert quick.checked == 4 * 16 + 5  # 16 small bodies per small path, one large download each


@needs_tools
def test_memory_is_read_for_the_object_and_one_four_times_larger(quick: Results) -> None:
    assert [m.size for m in quick.memory] == [8 * MiB, 32 * MiB]
    assert all(0 < m.idle_hwm <= m.peak_hwm for m in quick.memory)


@needs_tools
def test_a_quick_run_reports_every_table_and_judges_no_target(quick: Results) -> None:
    lines = "\n".join(report(quick, []))
    for label in processes.LABELS.values():
        assert label in lines
    assert "FAIL" not in lines
    assert exit_status(quick) == 0


@needs_tools
def test_a_load_through_refused_links_fails(storage: S3Server, tmp_path: Path) -> None:
    """A fast 403 is not a fast 200: unsigned GETs of a private bucket count as failures."""
    bucket = "private-" + secrets.token_hex(4)
    storage.client().create_bucket(Bucket=bucket)
    storage.client().put_object(Bucket=bucket, Key="a.bin", Body=b"a" * 4096)
    targets = write_targets(tmp_path / "targets.txt", [f"/{bucket}/a.bin"])
    found, _ = run_wrk(Load(storage.endpoint_url, targets, connections=2, seconds=1))
    assert found.requests > 0
    assert found.non_2xx == found.requests
    assert found.failed


@pytest.mark.parametrize(
    ("method", "bucket", "status"),
    [
        ("GET", BUCKET, 200),
        ("HEAD", BUCKET, 200),
        ("PUT", BUCKET, 403),
        ("DELETE", BUCKET, 403),
        ("GET", "elsewhere", 403),
    ],
)
def test_anonymous_requests_may_only_read_the_benchmark_bucket(
    storage: S3Server, method: str, bucket: str, status: int
) -> None:
    client = storage.client()
    for name in (BUCKET, "elsewhere"):
        ensure_bucket(client, name)
        client.put_object(Bucket=name, Key="grant/a.bin", Body=b"anonymous")
    body = b"overwritten" if method == "PUT" else None
    assert answer(f"{storage.endpoint_url}/{bucket}/grant/a.bin", method, body)[0] == status
    assert client.get_object(Bucket=bucket, Key="grant/a.bin")["Body"].read() == b"anonymous"


def test_anonymous_requests_may_not_list_the_bucket(storage: S3Server) -> None:
    ensure_bucket(storage.client(), BUCKET)
    assert answer(f"{storage.endpoint_url}/{BUCKET}?list-type=2")[0] == 403


@needs_tools
@pytest.mark.parametrize(
    ("change", "status"),
    [("none", 200), ("forged", 403), ("expired", 410), ("unsigned", 403), ("other path", 403)],
)
def test_the_nginx_peer_serves_secure_links_only(
    storage: S3Server, tmp_path: Path, change: str, status: int
) -> None:
    client = storage.client()
    ensure_bucket(client, BUCKET)
    for key in ("peer/a.bin", "peer/b.bin"):
        client.put_object(Bucket=BUCKET, Key=key, Body=key.encode())
    secret = secrets.token_urlsafe(16)
    path = f"/{BUCKET}/peer/a.bin"
    expires = int(time.time()) + (-60 if change == "expired" else 600)
    query = nginx_token(path, expires, secret if change != "forged" else "guessed")
    target = {
        "unsigned": path,
        "other path": f"/{BUCKET}/peer/b.bin?{query}",
    }.get(change, f"{path}?{query}")
    http, server = processes.nginx_config(storage, secret)
    with nginx(tmp_path, server, http=http) as peer:
        found, body = answer(peer.url(target))
    assert found == status
    if status == 200:
        assert body == b"peer/a.bin"


@pytest.mark.skipif(wrk_binary() is None, reason="needs wrk: Debian package wrk")
def test_the_tls_peer_serves_wrk_over_https(storage: S3Server, tmp_path: Path) -> None:
    """--tls: the one-worker gateway with the benchmark's self-signed certificate answers
    wrk's HTTPS requests with 200s only."""
    client = storage.client()
    ensure_bucket(client, BUCKET)
    client.put_object(Bucket=BUCKET, Key="tls/a.bin", Body=b"a" * 4096)
    keyring = Keyring([new_key("bench", Algorithm.HMAC_SHA256, Status.ACTIVE)])
    keyring_file = tmp_path / "gateway-keyring.json"
    keyring.public_export().save(keyring_file, public_only=True)
    signed = links(
        Signers(storage, keyring, "unused").gateway(), [StoredObject("tls/a.bin", 4096, "")], 64
    )
    targets = write_targets(tmp_path / "targets.txt", signed)
    settings = processes.tls_settings(
        tmp_path, processes.gateway_settings(storage, keyring_file, 1, {})
    )
    with gateway_serve(tmp_path, settings, env=storage.env(), name="tls") as gateway:
        found, _ = run_wrk(Load(processes.https_url(gateway.port), targets, 2, 1))
    assert found.requests > 0
    assert not found.failed, found
    assert found.bytes >= 4096 * found.requests


def test_a_gateway_that_cannot_start_is_reported_with_its_log(tmp_path: Path) -> None:
    with pytest.raises(ServerError, match="GATEWAY_ORIGIN"):
        start_gateway(tmp_path, {"origin": "ftp://nowhere", "keyring": str(tmp_path / "k")})


@pytest.mark.skipif(nginx_binary() is None, reason="needs nginx: Debian package nginx-light")
def test_an_nginx_that_cannot_start_is_reported_with_its_log(tmp_path: Path) -> None:
    with pytest.raises(ServerError, match="unknown directive"):
        start_nginx(tmp_path, "no_such_directive on;")
