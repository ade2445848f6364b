"""The chart's alerts as users install them: the rendered PrometheusRule checked by the real
promtool (`check rules`, and `test rules` on synthetic series), each alert with its runbook."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.chart.rendering import CHATSERVICE_API, MONITORING_API, REPO_ROOT, render_values
from tests.service.prometheus import require

ALERT_TESTS = Path(__file__).resolve().parent / "alerts" / "chatservice.test.yaml"
RUNBOOK = REPO_ROOT / "docs" / "runbook.md"


def rendered_groups(values: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    rendered = render_values(values or {}, (CHATSERVICE_API, MONITORING_API))
    groups: list[dict[str, Any]] = rendered.one("PrometheusRule")["spec"]["groups"]
    return groups


def alerts(groups: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [rule for group in groups for rule in group["rules"] if "alert" in rule]


@pytest.fixture(scope="module")
def rules_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("rules") / "chatservice-rules.yaml"
    path.write_text(yaml.safe_dump({"groups": rendered_groups()}))
    return path


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [require("promtool"), *args], capture_output=True, text=True, timeout=60, check=False
    )


def test_promtool_accepts_the_rendered_rules(rules_file: Path) -> None:
    result = promtool("check", "rules", str(rules_file))
    assert result.returncode == 0, result.stdout + result.stderr


def test_promtool_unit_tests_pass_on_the_rendered_rules(rules_file: Path, tmp_path: Path) -> None:
    # Text, not YAML, substitution: a YAML round trip turns series values such as 0x10 into
    # hexadecimal numbers.
    test_file = tmp_path / ALERT_TESTS.name
    test_file.write_text(ALERT_TESTS.read_text().replace("RENDERED_RULES", str(rules_file)))
    result = promtool("test", "rules", str(test_file))
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_alert_has_a_unit_test_in_which_it_fires() -> None:
    tests = yaml.safe_load(ALERT_TESTS.read_text())["tests"]
    fired = {
        case["alertname"]
        for test in tests
        for case in test["alert_rule_test"]
        if case.get("exp_alerts")
    }
    assert {rule["alert"] for rule in alerts(rendered_groups())} == fired


def test_every_alert_links_to_its_runbook_section() -> None:
    # GitHub's anchor of a `## Name` heading is the name in lower case.
    anchors = {
        match.group(1).lower() for match in re.finditer(r"^## (\S+)$", RUNBOOK.read_text(), re.M)
    }
    for rule in alerts(
        rendered_groups({"monitoring": {"prometheusRule": {"runbookURL": "https://u"}}})
    ):
        url = rule["annotations"]["runbook_url"]
        assert url == f"https://u#{rule['alert'].lower()}"
        assert rule["alert"].lower() in anchors, f"docs/runbook.md has no ## {rule['alert']}"


def test_without_a_published_runbook_each_alert_names_its_section_in_this_chart() -> None:
    version = yaml.safe_load((REPO_ROOT / "charts" / "chatservice" / "Chart.yaml").read_text())[
        "version"
    ]
    for rule in alerts(rendered_groups()):
        assert "runbook_url" not in rule["annotations"], "no link that leads nowhere"
        anchor = rule["alert"].lower()
        assert rule["annotations"]["runbook"] == (
            f"docs/runbook.md#{anchor} (chatservice chart {version})"
        )


def test_the_objectives_reach_the_burn_rate_alerts() -> None:
    values = {"latencySLO": {"objective": 0.995, "thresholdSeconds": "10.0"}}
    groups = rendered_groups({"monitoring": {"prometheusRule": values}})
    latency = [r for r in alerts(groups) if r["alert"] == "ChatServiceLatencyBudgetBurn"]
    assert {r["labels"]["severity"] for r in latency} == {"critical", "warning"}
    assert all("14.4 * (1 - 0.995)" in r["expr"] or "3 * (1 - 0.995)" in r["expr"] for r in latency)
    records = [r["expr"] for g in groups for r in g["rules"] if "latency" in r.get("record", "")]
    assert records
    assert all('le="10.0"' in expr for expr in records)
