"""The dashboard and the alerts ask only for metrics a real gateway exports, and get data.

A gateway in front of a real S3 server (SeaweedFS), with the edge cache on, serves valid,
rejected and missing-object requests; its /metrics is scraped from the admin listener, once
directly and once by a real Prometheus (Debian's `prometheus`) that then answers every panel's
query.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.deploy.conftest import tool
from tests.deploy.promql import is_recording_rule, metric_family
from tests.deploy.sources import (
    ALERTS,
    Query,
    dashboard_queries,
    read_through_rules,
    rule_queries,
)
from tests.integration.harness import (
    Keys,
    RunningGateway,
    make_keys,
    running_gateway,
    s3_gateway_settings,
)
from tests.servers import S3Server, free_port, seaweedfs

pytestmark = pytest.mark.integration

CACHE_METRICS = {
    "gateway_cache_requests_total",
    "gateway_cache_units",
    "gateway_cache_bytes",
    "gateway_cache_evictions_total",
    "gateway_cache_collapsed_total",
    "gateway_cache_bypasses_total",
    "gateway_cache_served_bytes_total",
    "gateway_cache_fetched_bytes_total",
}
BUCKET = "private"
OBJECT = b"hello from the deploy checks\n"
JOB = "edge-gateway"


@pytest.fixture(scope="module")
def s3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    with seaweedfs(tmp_path_factory.mktemp("s3")) as server:
        client = server.client()
        client.create_bucket(Bucket=BUCKET)
        client.put_object(Bucket=BUCKET, Key="media/hello.txt", Body=OBJECT)
        yield server


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> Keys:
    return make_keys(tmp_path_factory.mktemp("keys"))


@pytest.fixture
async def gw(
    s3: S3Server, keys: Keys, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> AsyncIterator[RunningGateway]:
    settings = s3_gateway_settings(
        monkeypatch,
        s3,
        f"s3://{BUCKET}/media",
        keys.gateway_file,
        cache="true",
        cache_dir=str(tmp_path / "cache"),
    )
    async with running_gateway(settings) as running:
        yield running


async def drive(gw: RunningGateway, keys: Keys) -> None:
    """One of each: served, ranged, HEAD, forged, unsigned, retired key, missing, bad method."""
    valid = keys.sign("/hello.txt")
    forged = re.sub(r"Signature=(.)", lambda m: "Signature=" + "AB"[m.group(1) == "A"], valid)
    expected = [
        ("GET", valid, {}, 200),
        ("GET", valid, {"Range": "bytes=0-4"}, 206),
        ("HEAD", valid, {}, 200),
        ("GET", forged, {}, 403),
        ("GET", "/hello.txt", {}, 403),
        ("GET", valid.replace("KeyID=live", "KeyID=gone"), {}, 403),
        ("GET", keys.sign("/missing.txt"), {}, 404),
        ("POST", valid, {}, 405),
    ]
    for method, target, headers, status in expected:
        response, _ = await gw.request(method, target, headers=headers)
        assert response.status == status, (method, target)


def exported(exposition: str) -> tuple[set[str], set[str]]:
    """(every family and sample name in a scrape, the histogram families)."""
    families = dict(re.findall(r"^# TYPE (\S+) (\S+)$", exposition, re.M))
    samples = set(re.findall(r"^([A-Za-z_:][\w:]*)[{ ]", exposition, re.M))
    histograms = {name for name, kind in families.items() if kind == "histogram"}
    return set(families) | samples, histograms


def used_metrics() -> dict[str, set[str]]:
    """Gateway metric name → where it is used (panels, variables, alerts, recording rules)."""
    used: dict[str, set[str]] = {}
    for query in dashboard_queries() + rule_queries():
        for name in query.names:
            if not is_recording_rule(name):
                used.setdefault(name, set()).add(query.origin)
    return used


async def scrape(gw: RunningGateway) -> str:
    status, body = await gw.admin_get("/metrics")
    assert status == 200
    return body


async def test_every_metric_the_dashboard_and_alerts_use_is_exported(
    gw: RunningGateway, keys: Keys
) -> None:
    await drive(gw, keys)
    names, histograms = exported(await scrape(gw))
    missing = {
        name: sorted(origins)
        for name, origins in used_metrics().items()
        if metric_family(name, histograms) not in names and name not in names
    }
    assert not missing, missing


async def test_every_cache_metric_the_gateway_exports_is_on_the_dashboard(
    gw: RunningGateway, keys: Keys
) -> None:
    """A panel reads it directly or through the recording rules it uses."""
    await drive(gw, keys)
    names, _ = exported(await scrape(gw))
    cache_metrics = {n for n in names if n.startswith("gateway_cache_") and "_created" not in n}
    assert cache_metrics >= CACHE_METRICS  # the gateway under test runs with the cache on
    on_dashboard = read_through_rules(
        {name for query in dashboard_queries() for name in query.names}
    )
    assert cache_metrics - on_dashboard == set()


def panel_queries() -> list[Query]:
    """The dashboard's queries."""
    return dashboard_queries()


def grafana_to_promql(expr: str) -> str:
    """Grafana's variables filled in; label_values(m, l) as the PromQL that lists the values."""
    expr = re.sub(r"label_values\(\s*([\w:]+)\s*,\s*(\w+)\s*\)", r"count by (\2) (\1)", expr)
    return expr.replace("$__rate_interval", "10s").replace("$job", JOB)


@contextlib.contextmanager
def prometheus(target: str, workdir: Path) -> Iterator[str]:
    """A Prometheus scraping `target` every second and evaluating alerts.yml; yields its URL."""
    config = workdir / "prometheus.yml"
    config.write_text(
        "global: {scrape_interval: 1s, evaluation_interval: 1s}\n"
        f"rule_files: ['{ALERTS}']\n"
        f"scrape_configs: [{{job_name: {JOB}, static_configs: [{{targets: ['{target}']}}]}}]\n"
    )
    port = free_port()
    log = (workdir / "prometheus.log").open("wb")
    process = subprocess.Popen(
        [
            tool("prometheus"),
            f"--config.file={config}",
            f"--storage.tsdb.path={workdir / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--log.level=warn",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()


async def query(session: aiohttp.ClientSession, url: str, expr: str) -> list[dict[str, Any]]:
    try:
        async with session.get(f"{url}/api/v1/query", params={"query": expr}) as response:
            document = await response.json()
    except aiohttp.ClientError:
        return []  # not up yet
    assert document["status"] == "success", (expr, document)
    result: list[dict[str, Any]] = document["data"]["result"]
    return result


def has_data(result: list[dict[str, Any]]) -> bool:
    return any(sample["value"][1] not in ("NaN", "+Inf", "-Inf") for sample in result)


async def test_every_panel_query_returns_data_from_a_real_prometheus(
    gw: RunningGateway, keys: Keys, tmp_path: Path
) -> None:
    queries = panel_queries()
    assert queries
    with prometheus(f"127.0.0.1:{gw.admin.port}", tmp_path) as url:

        async def keep_driving() -> None:
            while True:
                await drive(gw, keys)
                await asyncio.sleep(0.2)

        traffic = asyncio.create_task(keep_driving())
        waiting = {q.origin: grafana_to_promql(q.expr) for q in queries}
        deadline = time.monotonic() + 30
        async with aiohttp.ClientSession() as session:
            try:
                while waiting and time.monotonic() < deadline:
                    await asyncio.sleep(0.5)
                    for origin, expr in list(waiting.items()):
                        if has_data(await query(session, url, expr)):
                            del waiting[origin]
            finally:
                traffic.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await traffic
    assert not waiting, f"no data for: {waiting}"
