"""Prometheus metrics, in the gateway's own registry.

Label values are bounded: methods are the few the gateway answers, reasons come from fixed
enums, statuses are HTTP codes. Never a path, a key id chosen by a client, or a subject.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

_LATENCY_BUCKETS = (
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1,
    2.5,
    5,
    10,
    30,
    60,
    300,
)
_TTFB_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)
KNOWN_METHODS = frozenset({"GET", "HEAD", "PUT", "POST", "OPTIONS", "DELETE", "PATCH"})


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter(
            "gateway_requests_total",
            "Requests answered, by method, status and outcome reason.",
            ["method", "status", "reason"],
            registry=r,
        )
        self.links = Counter(
            "gateway_links_total",
            "Requests that reached link verification, by link scheme (edge: our token) and "
            "outcome reason.",
            ["scheme", "reason"],
            registry=r,
        )
        self.duration = Histogram(
            "gateway_request_duration_seconds",
            "Time from request to the last byte sent.",
            ["method"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.ttfb = Histogram(
            "gateway_time_to_first_byte_seconds",
            "Time from request to the response headers being sent.",
            ["method"],
            buckets=_TTFB_BUCKETS,
            registry=r,
        )
        self.sent_bytes = Counter(
            "gateway_sent_bytes_total", "Body bytes sent to clients.", registry=r
        )
        self.spliced_bytes = Counter(
            "gateway_spliced_bytes_total",
            "Of the body bytes sent, those moved from storage to the client inside the kernel "
            "(splice), never copied through the gateway.",
            registry=r,
        )
        self.sendfile_bytes = Counter(
            "gateway_sendfile_bytes_total",
            "Of the body bytes sent, those sent from the cache's slice files by sendfile(2), "
            "never copied through the gateway.",
            registry=r,
        )
        self.streams = Gauge(
            "gateway_streams_in_flight",
            "Object bodies being streamed to clients now.",
            registry=r,
        )
        self.received_bytes = Counter(
            "gateway_received_bytes_total", "Upload body bytes received from clients.", registry=r
        )
        self.uploads = Gauge(
            "gateway_uploads_in_flight",
            "Upload bodies being received and written to storage now.",
            registry=r,
        )
        self.client_connections = Gauge(
            "gateway_client_connections",
            "Client connections open now, idle or with a request being handled.",
            registry=r,
        )
        self.abandoned_uploads = Counter(
            "gateway_abandoned_uploads_aborted_total",
            "Multipart uploads of gateways that died mid-upload, aborted by this one's sweeps.",
            registry=r,
        )
        self.storage_errors = Counter(
            "gateway_storage_errors_total", "Storage failures, by kind.", ["kind"], registry=r
        )
        self.keyring_generation = Gauge(
            "gateway_keyring_generation",
            "Increments with every successful keyring load.",
            registry=r,
        )
        self.keyring_keys = Gauge(
            "gateway_keyring_keys",
            "Keys in the loaded keyring, by status.",
            ["status"],
            registry=r,
        )
        self.keyring_reload_failures = Counter(
            "gateway_keyring_reload_failures_total",
            "Keyring reloads refused because the new file was invalid.",
            registry=r,
        )

        self.revocation_entries = Gauge(
            "gateway_revocation_entries",
            "Live entries in this gateway's revocation view, by kind.",
            ["kind"],
            registry=r,
        )
        self.revocation_sync_lag = Gauge(
            "gateway_revocation_sync_lag_seconds",
            "Seconds since the revocation view was last confirmed in sync with its store.",
            registry=r,
        )
        self.revocation_store_up = Gauge(
            "gateway_revocation_store_up",
            "1 while the revocation store answers, 0 while it is unreachable.",
            registry=r,
        )
        self.revocations_added = Counter(
            "gateway_revocations_added_total",
            "Revocations written through this gateway's admin API.",
            registry=r,
        )

        self.cache_requests = Counter(
            "gateway_cache_requests_total",
            "GET and HEAD requests answered with the cache on, by cache outcome "
            "(hit, miss, revalidated, stale, bypass).",
            ["state"],
            registry=r,
        )
        self.cache_units = Gauge(
            "gateway_cache_units",
            "Units held per cache tier (memory: objects, disk: slices).",
            ["tier"],
            registry=r,
        )
        self.cache_bytes = Gauge(
            "gateway_cache_bytes", "Bytes held per cache tier.", ["tier"], registry=r
        )

        # Label lookups hash and validate their values on every call; a request makes three,
        # so the children are kept (the label sets are bounded, see the module docstring).
        self._children: dict[tuple[object, tuple[str, ...]], Any] = {}

    def _child(self, metric: Any, *labels: str) -> Any:
        child = self._children.get((metric, labels))
        if child is None:
            child = self._children[metric, labels] = metric.labels(*labels)
        return child

    def request_counter(self, method: str, status: int, reason: str) -> Any:
        return self._child(self.requests, method, str(status), reason)

    def link_counter(self, scheme: str, reason: str) -> Any:
        return self._child(self.links, scheme, reason)

    def duration_histogram(self, method: str) -> Any:
        return self._child(self.duration, method)

    def cache_counter(self, state: str) -> Any:
        return self._child(self.cache_requests, state)

    def ttfb_histogram(self, method: str) -> Any:
        return self._child(self.ttfb, method)

    def count_callback(self, name: str, documentation: str, read: Callable[[], float]) -> None:
        """A counter kept by another component (read at scrape time)."""
        self.registry.register(_CallbackCounter(name, documentation, read))

    def count_callback_by(
        self, name: str, documentation: str, label: str, read: Callable[[], Mapping[str, float]]
    ) -> None:
        """A counter with one label kept by another component: `read` gives the count of each
        label value (at scrape time)."""
        self.registry.register(_LabelledCallbackCounter(name, documentation, label, read))

    @staticmethod
    def method_label(method: str) -> str:
        return method if method in KNOWN_METHODS else "OTHER"


class _CallbackCounter(Collector):
    def __init__(self, name: str, documentation: str, read: Callable[[], float]) -> None:
        self._name, self._documentation, self._read = name, documentation, read

    def collect(self) -> Iterator[Metric]:
        yield CounterMetricFamily(self._name, self._documentation, value=self._read())

    def describe(self) -> Iterator[Metric]:
        yield CounterMetricFamily(self._name, self._documentation)


class _LabelledCallbackCounter(Collector):
    def __init__(
        self, name: str, documentation: str, label: str, read: Callable[[], Mapping[str, float]]
    ) -> None:
        self._name, self._documentation, self._label, self._read = name, documentation, label, read

    def collect(self) -> Iterator[Metric]:
        family = CounterMetricFamily(self._name, self._documentation, labels=[self._label])
        for value, count in self._read().items():
            family.add_metric([value], count)
        yield family

    def describe(self) -> Iterator[Metric]:
        yield CounterMetricFamily(self._name, self._documentation, labels=[self._label])
