"""The cache benchmark against real servers: its quick run, its nginx cache peer and its
counting forwarder.

The quick run (about 45 s) proves the harness measures every path, that its warm runs were
answered by the caches and its cold ones were not, and counts what origin shielding sent to
the storage; it judges no timed target (`make cache-bench` runs the full one). wrk and nginx
are Debian packages; without them these tests skip, saying which.
"""

from __future__ import annotations

import secrets
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from benchmarks.cache_load.counting import Request, counting_forwarder
from benchmarks.cache_load.peers import LABELS, cache_nginx
from benchmarks.cache_load.report import exit_status, report
from benchmarks.cache_load.run import QUICK, SMALL_CONNECTIONS, Options, Results, run
from benchmarks.gateway_load import processes
from benchmarks.gateway_load.measure import MiB, wrk_binary
from benchmarks.gateway_load.objects import BUCKET, ensure_bucket, nginx_token
from tests.alone import alone
from tests.servers import S3Server, nginx_binary

pytestmark = pytest.mark.integration

TOOLS_MISSING = wrk_binary() is None or nginx_binary() is None
TOOLS = (
    "needs wrk and nginx: Debian packages wrk and nginx-light "
    "(scripts/bootstrap.sh installs them when run as root)"
)
needs_tools = pytest.mark.skipif(TOOLS_MISSING, reason=TOOLS)
needs_nginx = pytest.mark.skipif(
    nginx_binary() is None, reason="needs nginx: Debian package nginx-light"
)
DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))
WARM = ["direct", "gateway", "gateway-cache", "nginx-cache"]


def answer(url: str, headers: dict[str, str] | None = None) -> tuple[int, bytes]:
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with DIRECT.open(request, timeout=10) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


@pytest.fixture(scope="module")
def storage(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    """The benchmark's storage: private, but for anonymous reads of its bucket."""
    with processes.storage(tmp_path_factory.mktemp("cache-s3")) as server:
        ensure_bucket(server.client(), BUCKET)
        yield server


@pytest.fixture(scope="module")
def quick(storage: S3Server, tmp_path_factory: pytest.TempPathFactory) -> Results:
    """One quick run of the whole benchmark."""
    if TOOLS_MISSING:
        pytest.skip(TOOLS)
    with alone():  # its figures size its own later runs: no neighbour's load in between
        return run(
            tmp_path_factory.mktemp("cache-load"), storage, Options(QUICK), log=lambda _: None
        )


@needs_tools
@pytest.mark.parametrize(
    ("kind", "peers"), [("small", WARM), ("large", WARM), ("cold", ["gateway", "gateway-cache"])]
)
def test_the_quick_run_loads_every_path(quick: Results, kind: str, peers: list[str]) -> None:
    rows = getattr(quick, kind)
    assert list(rows) == peers
    for name, row in rows.items():
        assert not row.failed, (name, row.non_2xx, row.socket_errors)
        assert row.requests > 0


@needs_tools
def test_warm_runs_were_served_by_the_caches_and_cold_runs_by_none(quick: Results) -> None:
    assert set(quick.states) == {
        ("small", "gateway-cache"),
        ("small", "nginx-cache"),
        ("large", "gateway-cache"),
        ("large", "nginx-cache"),
        ("cold", "gateway-cache"),
    }
    assert quick.unserved() == []
    # wrk counts the requests answered within its run; the cache also those it cut off.
    misses, answered = quick.states[("cold", "gateway-cache")]["miss"], quick.cold["gateway-cache"]
    assert answered.requests <= misses <= answered.requests + SMALL_CONNECTIONS


@needs_tools
def test_every_answer_checked_before_timing_was_right(quick: Results) -> None:
    assert quick.wrong == {}
    # 64 small bodies and the large download per path, twice through each cache.
    assert quick.checked == (4 + 2) * 65


@needs_tools
@pytest.mark.parametrize("peer", ["gateway-cache", "nginx-cache"])
def test_clients_at_once_on_a_cold_object_fetch_each_slice_once(quick: Results, peer: str) -> None:
    (found,) = [s for s in quick.shielding if s.peer == peer]
    assert (found.size, found.slices, found.clients) == (8 * MiB, 2, 32)
    assert found.right == found.clients
    assert found.gets == found.slices
    assert sorted(found.ranges) == ["bytes=0-4194303", "bytes=4194304-8388607"]


@needs_tools
def test_memory_is_read_with_the_memory_tier_at_its_bound(quick: Results) -> None:
    assert [m.size for m in quick.memory] == [8 * MiB, 32 * MiB]
    for m in quick.memory:
        assert m.memory_bound - MiB < m.memory_held <= m.memory_bound
        assert m.disk_held == m.size  # the object's slices, all of them
        assert 0 < m.idle_hwm <= m.filled_hwm <= m.peak_hwm


@needs_tools
def test_a_quick_run_reports_every_table_and_judges_no_timed_target(quick: Results) -> None:
    lines = "\n".join(report(quick, []))
    for label in LABELS.values():
        assert label in lines
    for table in ("(e)", "(f)", "(g)", "(h)", "(i)", "memory:"):
        assert f"\n{table} " in lines
    assert "FAIL" not in lines
    assert exit_status(quick) == 0


def nginx_target(path: str, secret: str, change: str = "none") -> str:
    expires = int(time.time()) + (-60 if change == "expired" else 600)
    query = nginx_token(path, expires, secret if change != "forged" else "guessed")
    return path if change == "unsigned" else f"{path}?{query}"


@needs_nginx
@pytest.mark.parametrize(
    ("change", "status"), [("none", 200), ("forged", 403), ("expired", 410), ("unsigned", 403)]
)
def test_the_nginx_cache_peer_serves_secure_links_only(
    storage: S3Server, tmp_path: Path, change: str, status: int
) -> None:
    storage.client().put_object(Bucket=BUCKET, Key="peer/c.bin", Body=b"cached")
    secret = secrets.token_urlsafe(16)
    host = processes.storage_host(storage)
    with cache_nginx(tmp_path, host, secret, 1 * MiB, name="peer") as (peer, _):
        found, body = answer(peer.url(nginx_target(f"/{BUCKET}/peer/c.bin", secret, change)))
    assert found == status
    if status == 200:
        assert body == b"cached"


@needs_nginx
def test_the_nginx_cache_peer_answers_a_second_read_from_its_cache(
    storage: S3Server, tmp_path: Path
) -> None:
    body = secrets.token_bytes(3 * MiB // 2)  # two slices of 1 MiB
    storage.client().put_object(Bucket=BUCKET, Key="peer/sliced.bin", Body=body)
    secret = secrets.token_urlsafe(16)
    path = f"/{BUCKET}/peer/sliced.bin"
    with (
        counting_forwarder(("127.0.0.1", storage.port)) as forwarder,
        cache_nginx(tmp_path, forwarder.host, secret, 1 * MiB, name="peer") as (peer, log),
    ):
        assert answer(peer.url(nginx_target(path, secret))) == (200, body)
        assert answer(peer.url(nginx_target(path, secret))) == (200, body)
        status, part = answer(peer.url(nginx_target(path, secret)), {"Range": "bytes=1048570-"})
    assert (status, part) == (206, body[1048570:])
    gets = [r.range for r in forwarder.requests if r.path == path]
    assert gets == ["bytes=0-1048575", "bytes=1048576-2097151"]
    assert log.read_text().split() == ["MISS", "HIT", "HIT"]


def test_the_counting_forwarder_records_each_request_with_its_range(storage: S3Server) -> None:
    storage.client().put_object(Bucket=BUCKET, Key="peer/counted.bin", Body=b"0123456789")
    path = f"/{BUCKET}/peer/counted.bin"
    with counting_forwarder(("127.0.0.1", storage.port)) as forwarder:
        for byte_range in ("bytes=0-3", "bytes=4-"):
            status, _ = answer(f"http://{forwarder.host}{path}", {"Range": byte_range})
            assert status == 206  # anonymous reads of the bucket are granted
        requests = forwarder.requests
        assert forwarder.connections == 2
    assert requests == [Request("GET", path, "bytes=0-3"), Request("GET", path, "bytes=4-")]
