"""`gateway.workers`: how the supervisor of `gateway serve --workers N` sees its workers.

`merge` makes every worker's metrics one exposition, each sample labelled `worker`: summing
over that label must give what one process serving all the traffic would have counted.
`Workers` asks each worker's own admin app (on a Unix socket) for `/readyz` and `/metrics`.
"""

from __future__ import annotations

import shutil
import tempfile
from collections import defaultdict
from collections.abc import AsyncIterator, Iterator
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path

import pytest
from aiohttp import web
from hypothesis import given
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry, Counter, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from gateway import settings as settings_module
from gateway.app import PublicListener, create_admin_app, create_app
from gateway.observability.metrics import Metrics
from gateway.workers import Workers, merge
from signer import Algorithm, Keyring, Status, new_key

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def samples(exposition: bytes | str) -> Samples:
    """Every sample of an exposition, parsed by prometheus_client's own parser."""
    text = exposition.decode() if isinstance(exposition, bytes) else exposition
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def types(exposition: bytes) -> dict[str, str]:
    return {f.name: f.type for f in text_string_to_metric_families(exposition.decode())}


def exposition(metrics: Metrics) -> str:
    return generate_latest(metrics.registry).decode()


def busy_worker(ok: int, revoked: int, durations: list[float], streams: int) -> Metrics:
    metrics = Metrics()
    metrics.requests.labels("GET", "200", "ok").inc(ok)
    if revoked:
        metrics.requests.labels("GET", "403", "revoked").inc(revoked)
    for duration in durations:
        metrics.duration.labels("GET").observe(duration)
    metrics.streams.set(streams)
    return metrics


def test_every_sample_of_every_worker_survives_with_its_worker_label() -> None:
    workers = {
        "0": exposition(busy_worker(3, 0, [0.01], 2)),
        "1": exposition(busy_worker(2, 1, [0.2, 7.0], 5)),
    }
    merged = samples(merge(workers))
    expected = {
        (name, labels | {("worker", worker)}): value
        for worker, text in workers.items()
        for (name, labels), value in samples(text).items()
    }
    assert merged == expected


def test_counters_from_all_workers_add_up() -> None:
    merged = samples(
        merge(
            {
                "0": exposition(busy_worker(3, 0, [], 0)),
                "1": exposition(busy_worker(2, 1, [], 0)),
            }
        )
    )
    totals: dict[frozenset[tuple[str, str]], float] = defaultdict(float)
    for (name, labels), value in merged.items():
        if name == "gateway_requests_total":
            totals[frozenset(kv for kv in labels if kv[0] != "worker")] += value
    ok = frozenset({("method", "GET"), ("status", "200"), ("reason", "ok")})
    revoked = frozenset({("method", "GET"), ("status", "403"), ("reason", "revoked")})
    assert dict(totals) == {ok: 5.0, revoked: 1.0}


def test_histograms_keep_buckets_count_and_sum_per_worker() -> None:
    merged = samples(
        merge(
            {
                "0": exposition(busy_worker(0, 0, [0.01], 0)),
                "1": exposition(busy_worker(0, 0, [0.2, 7.0], 0)),
            }
        )
    )

    def value(suffix: str, worker: str, **labels: str) -> float:
        key = {("method", "GET"), ("worker", worker), *labels.items()}
        return merged[(f"gateway_request_duration_seconds{suffix}", frozenset(key))]

    assert [value("_count", w) for w in "01"] == [1.0, 2.0]
    assert [value("_sum", w) for w in "01"] == [0.01, 7.2]
    assert [value("_bucket", w, le="0.25") for w in "01"] == [1.0, 1.0]
    assert [value("_bucket", w, le="+Inf") for w in "01"] == [1.0, 2.0]


def test_metric_types_are_those_of_one_process() -> None:
    one = exposition(busy_worker(1, 1, [0.1], 1)).encode()
    merged = merge({"0": one.decode(), "1": one.decode()})
    assert types(merged) == types(one)
    assert types(merged)["gateway_requests"] == "counter"
    assert types(merged)["gateway_request_duration_seconds"] == "histogram"
    assert types(merged)["gateway_streams_in_flight"] == "gauge"


def test_a_family_only_one_worker_has_is_kept() -> None:
    extra = CollectorRegistry()
    Counter("gateway_only_here", "Only in worker 1.", registry=extra).inc(4)
    merged = samples(merge({"0": exposition(Metrics()), "1": generate_latest(extra).decode()}))
    assert merged[("gateway_only_here_total", frozenset({("worker", "1")}))] == 4.0


def test_no_workers_answering_is_an_empty_exposition() -> None:
    assert merge({}) == b""


LABEL_VALUES = st.text(st.characters(codec="utf-8"), max_size=12)


@given(
    st.dictionaries(
        st.sampled_from(["0", "1", "2", "3"]),
        st.dictionaries(LABEL_VALUES, st.integers(0, 10**9), max_size=4),
        max_size=4,
    )
)
def test_any_counts_under_any_label_values_survive_the_merge(
    counts: dict[str, dict[str, int]],
) -> None:
    """Label values with quotes, backslashes, newlines or any script round-trip unchanged."""
    texts = {}
    for worker, by_value in counts.items():
        registry = CollectorRegistry()
        counter = Counter("gateway_things", "Things.", ["kind"], registry=registry)
        for value, count in by_value.items():
            counter.labels(value).inc(count)
        texts[worker] = generate_latest(registry).decode()
    merged = samples(merge(texts))
    found = {
        (dict(labels)["worker"], dict(labels)["kind"]): value
        for (name, labels), value in merged.items()
        if name == "gateway_things_total"
    }
    assert found == {
        (worker, value): float(count)
        for worker, by_value in counts.items()
        for value, count in by_value.items()
    }


# --- Workers: the supervisor asking its workers' own admin apps over Unix sockets -------------


@pytest.fixture
def short_dir() -> Iterator[Path]:
    """A directory with a short path: a Unix socket path must fit in 108 bytes."""
    path = Path(tempfile.mkdtemp(prefix="gw-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@asynccontextmanager
async def worker(directory: Path, index: int) -> AsyncIterator[Path]:
    """A real gateway's admin app on `directory/worker-N.sock`, as `gateway.server.run` serves
    it in a worker (its public app started, not listening); yields its objects directory."""
    objects = directory / f"objects-{index}"
    objects.mkdir()
    keyring = directory / f"keyring-{index}.json"
    Keyring([new_key("k1", Algorithm.ED25519, Status.ACTIVE)]).public_export().save(
        keyring, public_only=True
    )
    settings = settings_module.load(
        environ={
            "GATEWAY_ORIGIN": f"file://{objects}",
            "GATEWAY_KEYRING": str(keyring),
            "GATEWAY_REVOCATION_DB": str(directory / f"revocations-{index}.sqlite3"),
            "GATEWAY_ACCESS_LOG": "false",
        }
    )
    public = PublicListener(create_app(settings))
    await public.start()
    admin = web.AppRunner(create_admin_app(public.app, settings))
    await admin.setup()
    await web.UnixSite(admin, str(directory / f"worker-{index}.sock")).start()
    try:
        yield objects
    finally:
        await admin.cleanup()
        await public.cleanup()


@asynccontextmanager
async def fleet(
    directory: Path, running: list[int], size: int
) -> AsyncIterator[tuple[Workers, dict[int, Path]]]:
    """`size` workers' sockets, of which only those in `running` have a worker behind them;
    with each running worker's objects directory."""
    async with AsyncExitStack() as stack:
        objects = {i: await stack.enter_async_context(worker(directory, i)) for i in running}
        workers = Workers({i: directory / f"worker-{i}.sock" for i in range(size)})
        stack.push_async_callback(workers.close)
        yield workers, objects


async def test_the_fleet_is_ready_when_every_worker_is(short_dir: Path) -> None:
    async with fleet(short_dir, [0, 1], 2) as (workers, _):
        assert await workers.readiness() == (200, "ready: 2 workers")


async def test_a_worker_not_answering_makes_the_fleet_unready_naming_it(short_dir: Path) -> None:
    async with fleet(short_dir, [0], 2) as (workers, _):
        assert await workers.readiness() == (503, "worker 1: not answering yet")


async def test_a_worker_not_ready_makes_the_fleet_unready_with_its_reason(
    short_dir: Path,
) -> None:
    async with fleet(short_dir, [0, 1], 2) as (workers, objects):
        shutil.rmtree(objects[1])  # worker 1's storage check fails
        assert await workers.readiness() == (503, "worker 1: storage: origin_error")


async def test_metrics_leave_out_a_worker_not_answering(short_dir: Path) -> None:
    async with fleet(short_dir, [1], 2) as (workers, _):
        body, content_type = await workers.metrics()
    assert content_type.startswith("text/plain")
    labels = {dict(labels).get("worker") for _, labels in samples(body)}
    assert labels == {"1"}
