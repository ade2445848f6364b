"""The Grafana dashboards as the chart ships them, and the PromQL of their panels."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

import promql_parser

from tests.chart.rendering import Rendered, render_values

SIDECAR_LABEL = "grafana_dashboard"
# Grafana replaces these before Prometheus sees a query; any valid stand-in parses the same.
_RANGE_VARIABLES = re.compile(r"\$__(rate_interval|interval|range)\b")
_VARIABLES = re.compile(r"\$\{?\w+\}?")
_LABEL_VALUES = re.compile(r"label_values\((?P<selector>[^,]+),")


def shipped(rendered: Rendered | None = None) -> dict[str, dict[str, Any]]:
    """Each dashboard ConfigMap's JSON by its `uid`."""
    rendered = rendered or render_values({})
    found = {}
    for config_map in rendered.of_kind("ConfigMap"):
        if SIDECAR_LABEL in config_map["metadata"].get("labels", {}):
            for text in config_map["data"].values():
                dashboard = json.loads(text)
                found[dashboard["uid"]] = dashboard
    return found


def panels(dashboard: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for panel in dashboard["panels"]:
        yield panel
        yield from panel.get("panels", [])  # a collapsed row holds its panels


def queries(dashboard: dict[str, Any]) -> Iterator[str]:
    """Every PromQL expression: panel targets and the selectors of the variables' queries."""
    for panel in panels(dashboard):
        for target in panel.get("targets", []):
            yield target["expr"]
    for variable in dashboard["templating"]["list"]:
        if variable["type"] == "query":
            match = _LABEL_VALUES.match(variable["query"]["query"])
            assert match, f"variable {variable['name']}: not a label_values() query"
            yield match.group("selector")


def parse(expr: str) -> promql_parser.Expr:
    return promql_parser.parse(_VARIABLES.sub("x", _RANGE_VARIABLES.sub("5m", expr)))


def metric_names(expr: str) -> set[str]:
    names: set[str] = set()

    def visit(node: promql_parser.Expr) -> None:
        if isinstance(node, promql_parser.VectorSelector):
            if node.name:
                names.add(node.name)
            names.update(m.value for m in node.matchers.matchers if m.name == "__name__")

    promql_parser.walk(parse(expr), visit)
    return names
