"""The metric names a PromQL expression reads, without a PromQL parser.

Enough of the grammar to tell names apart from everything else: string literals, label
matchers `{...}`, range and subquery brackets `[...]` and grouping clauses `by (...)` are
removed; then every remaining identifier not followed by `(` (a function call) and not a
keyword is a metric name. Recording-rule names (with a colon) are returned separately.
"""

from __future__ import annotations

import re

_STRINGS = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`')
_MATCHERS = re.compile(r"\{[^{}]*\}")
_BRACKETS = re.compile(r"\[[^\[\]]*\]")
_GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^()]*\)")
_IDENTIFIER = re.compile(r"(?<![\w.:$])([A-Za-z_:][\w:]*)(\s*\()?")
_KEYWORDS = frozenset({"and", "or", "unless", "bool", "offset", "inf", "nan", "start", "end"})
# Grafana's query for template variables: label_values(metric, label).
_LABEL_VALUES = re.compile(r"label_values\(\s*([A-Za-z_:][\w:]*)\s*,")
HISTOGRAM_SUFFIXES = ("_bucket", "_sum", "_count")


def names_in(expr: str) -> set[str]:
    """Every series name `expr` selects: metric names and recording-rule names alike."""
    text = _STRINGS.sub(" ", expr)
    text = _MATCHERS.sub(" ", text)
    text = _BRACKETS.sub(" ", text)
    text = _GROUPING.sub(" ", text)
    return {
        match.group(1)
        for match in _IDENTIFIER.finditer(text)
        if match.group(2) is None and match.group(1).lower() not in _KEYWORDS
    }


def names_in_variable_query(query: str) -> set[str]:
    return set(_LABEL_VALUES.findall(query))


def is_recording_rule(name: str) -> bool:
    """By the Prometheus naming convention, level:metric:operations; exporters never use ':'."""
    return ":" in name


def metric_family(name: str, histograms: set[str]) -> str:
    """`x_bucket`, `x_sum` and `x_count` of a histogram `x` are `x`."""
    for suffix in HISTOGRAM_SUFFIXES:
        if name.endswith(suffix) and name[: -len(suffix)] in histograms:
            return name[: -len(suffix)]
    return name
