"""The chart's Grafana dashboards: ConfigMaps for Grafana's sidecar, panels whose PromQL parses.
(tests/service/test_dashboard_metrics.py checks their metric names against real scrapes.)"""

from __future__ import annotations

import pytest

from tests.chart.dashboards import SIDECAR_LABEL, metric_names, panels, parse, queries, shipped
from tests.chart.rendering import NAMESPACE, render_values


def test_the_chart_ships_a_gateway_and_an_operator_dashboard_for_the_sidecar() -> None:
    rendered = render_values({})
    maps = [m for m in rendered.of_kind("ConfigMap") if SIDECAR_LABEL in m["metadata"]["labels"]]
    assert {m["metadata"]["labels"][SIDECAR_LABEL] for m in maps} == {"1"}
    assert {m["metadata"]["namespace"] for m in maps} == {NAMESPACE}
    assert set(shipped(rendered)) == {"chatservice-gateway", "chatservice-operator"}


def test_dashboards_can_be_turned_off_or_placed_for_another_sidecar() -> None:
    assert shipped(render_values({"monitoring": {"dashboards": {"enabled": False}}})) == {}
    values = {
        "labels": {"dashboards": "chatservice"},
        "namespace": "grafana",
        "annotations": {"grafana_folder": "LLM"},
    }
    rendered = render_values({"monitoring": {"dashboards": values}})
    maps = [m for m in rendered.of_kind("ConfigMap") if "dashboards" in m["metadata"]["labels"]]
    assert len(maps) == 2
    for config_map in maps:
        assert config_map["metadata"]["namespace"] == "grafana"
        assert config_map["metadata"]["annotations"] == {"grafana_folder": "LLM"}
        # The default label stays unless the values' labels drop it: both select the maps.
        assert config_map["metadata"]["labels"][SIDECAR_LABEL] == "1"


@pytest.mark.parametrize("uid", ["chatservice-gateway", "chatservice-operator"])
def test_every_panel_is_described_has_a_unit_and_queries_the_chosen_data_source(uid: str) -> None:
    dashboard = shipped()[uid]
    variables = {v["name"] for v in dashboard["templating"]["list"]}
    assert {"datasource", "namespace", "job"} <= variables
    ids = [panel["id"] for panel in panels(dashboard)]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    for panel in panels(dashboard):
        if panel["type"] == "row":
            continue
        assert panel["datasource"]["uid"] == "${datasource}", panel["title"]
        assert panel["description"], f"{panel['title']} says nothing of what it shows"
        assert panel["fieldConfig"]["defaults"]["unit"], f"{panel['title']} has no unit"
        assert panel["targets"], f"{panel['title']} has no query"
        for target in panel["targets"]:
            # Each query follows the dashboard's namespace and job choice.
            assert 'namespace=~"$namespace"' in target["expr"], panel["title"]
    for expr in queries(dashboard):
        parse(expr)
        assert metric_names(expr), expr


def test_a_broken_query_is_caught() -> None:
    with pytest.raises(ValueError, match="unclosed left parenthesis"):
        parse("sum(rate(chatservice_http_requests_total[$__rate_interval])")
