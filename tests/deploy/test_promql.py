"""The metric-name extraction that the dashboard and alert checks rely on."""

from __future__ import annotations

import pytest

from tests.deploy.promql import metric_family, names_in, names_in_variable_query


@pytest.mark.parametrize(
    ("expr", "names"),
    [
        ("gateway_streams_in_flight", {"gateway_streams_in_flight"}),
        (
            'sum by (job, reason) (rate(gateway_requests_total{reason!~"ok|x{2}"}[5m]))',
            {"gateway_requests_total"},
        ),
        (
            "sum(rate(a_total[5m])) by (job) / on (job) group_left (le) b_total offset 5m",
            {"a_total", "b_total"},
        ),
        (
            'histogram_quantile(0.99, sum by (le) (x_bucket{job=~"$job"}[$__rate_interval]))',
            {"x_bucket"},
        ),
        (
            "job:gateway_requests:rate5m > 1e3 and bool up == Inf",
            {"job:gateway_requests:rate5m", "up"},
        ),
        ("max_over_time(a[1h:5m]) unless b or vector(0)", {"a", "b"}),
        ("42", set()),
    ],
)
def test_names_are_the_selected_series_and_nothing_else(expr: str, names: set[str]) -> None:
    assert names_in(expr) == names


def test_a_grafana_variable_query_names_its_metric() -> None:
    assert names_in_variable_query("label_values(gateway_keyring_generation, job)") == {
        "gateway_keyring_generation"
    }


@pytest.mark.parametrize(
    ("name", "family"),
    [
        ("h_seconds_bucket", "h_seconds"),
        ("h_seconds_count", "h_seconds"),
        ("h_seconds_sum", "h_seconds"),
        ("c_count", "c_count"),  # not a histogram: the name stays
    ],
)
def test_histogram_series_belong_to_their_family(name: str, family: str) -> None:
    assert metric_family(name, histograms={"h_seconds"}) == family
