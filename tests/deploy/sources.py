"""The PromQL of the dashboard and of the alert rules: every query, with where it comes from."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from tests.deploy.conftest import DEPLOY, PROMETHEUS, load_yaml
from tests.deploy.promql import names_in, names_in_variable_query

DASHBOARD = DEPLOY / "grafana" / "dashboard.json"
ALERTS = PROMETHEUS / "alerts.yml"


@dataclass(frozen=True)
class Query:
    origin: str  # "panel 'Bytes served' A", "alert GatewayOriginErrors", ...
    expr: str
    names: frozenset[str]


def dashboard() -> dict[str, Any]:
    with DASHBOARD.open() as handle:
        document: dict[str, Any] = json.load(handle)
    return document


def panels(document: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for panel in document.get("panels", []):
        yield panel
        yield from panel.get("panels", [])  # panels inside collapsed rows


def dashboard_queries() -> list[Query]:
    document = dashboard()
    queries = [
        Query(
            f"panel {panel['title']!r} {target['refId']}",
            target["expr"],
            frozenset(names_in(target["expr"])),
        )
        for panel in panels(document)
        for target in panel.get("targets", [])
    ]
    for variable in document.get("templating", {}).get("list", []):
        query = variable.get("query")
        text = query.get("query", "") if isinstance(query, dict) else str(query or "")
        if variable.get("type") == "query":
            names = names_in_variable_query(text)
            queries.append(Query(f"variable ${variable['name']}", text, frozenset(names)))
    return queries


def rules() -> list[dict[str, Any]]:
    (document,) = load_yaml(ALERTS)
    groups: list[dict[str, Any]] = document["groups"]
    return [rule for group in groups for rule in group["rules"]]


def rule_queries() -> list[Query]:
    return [
        Query(
            f"alert {rule['alert']}" if "alert" in rule else f"record {rule['record']}",
            rule["expr"],
            frozenset(names_in(rule["expr"])),
        )
        for rule in rules()
    ]


def recorded_names() -> set[str]:
    return {rule["record"] for rule in rules() if "record" in rule}


def read_through_rules(names: set[str]) -> set[str]:
    """`names` with every recording rule among them replaced by the series its expression
    reads, down to exported metrics."""
    recorded = {
        rule["record"]: frozenset(names_in(rule["expr"])) for rule in rules() if "record" in rule
    }
    metrics: set[str] = set()
    seen: set[str] = set()
    pending = list(names)
    while pending:
        name = pending.pop()
        if name not in seen:
            seen.add(name)
            if name in recorded:
                pending.extend(recorded[name])
            else:
                metrics.add(name)
    return metrics
