"""deploy/prometheus: rules promtool accepts, unit tests that fire every alert, a valid config."""

from __future__ import annotations

from tests.deploy.conftest import PROMETHEUS, load_yaml, run, tool
from tests.deploy.sources import ALERTS, dashboard_queries, recorded_names, rules

ALERT_TESTS = PROMETHEUS / "alerts.test.yml"


def test_promtool_checks_the_rules() -> None:
    result = run(tool("promtool"), "check", "rules", ALERTS)
    assert result.returncode == 0, result.stdout + result.stderr


def test_promtool_unit_tests_pass() -> None:
    result = run(tool("promtool"), "test", "rules", ALERT_TESTS)
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_alert_is_made_to_fire_by_a_unit_test() -> None:
    (document,) = load_yaml(ALERT_TESTS)
    fired = {
        case["alertname"]
        for test in document["tests"]
        for case in test.get("alert_rule_test", [])
        if case.get("exp_alerts")
    }
    assert fired == {rule["alert"] for rule in rules() if "alert" in rule}


def test_every_alert_has_a_severity_and_a_summary() -> None:
    for rule in rules():
        if "alert" in rule:
            assert rule["labels"]["severity"] in ("page", "warning"), rule["alert"]
            assert rule["annotations"]["summary"], rule["alert"]


def test_the_compose_stacks_config_is_valid_and_loads_the_rules() -> None:
    config = PROMETHEUS / "prometheus.yml"
    result = run(tool("promtool"), "check", "config", config)
    assert result.returncode == 0, result.stdout + result.stderr
    (document,) = load_yaml(config)
    assert document["rule_files"] == [ALERTS.name]


def test_the_dashboard_uses_only_recording_rules_that_exist() -> None:
    used = {name for query in dashboard_queries() for name in query.names if ":" in name}
    assert used
    assert used <= recorded_names()
