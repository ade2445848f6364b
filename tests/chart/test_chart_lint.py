"""`helm lint --strict` and `helm package`, through the Helm engine: what a chart repository's CI
runs before it publishes a chart."""

from __future__ import annotations

from pathlib import Path

import helm_python

from tests.versions import KUBERNETES_VERSION

from .rendering import CHART_DIR, NAMESPACE

INFO = 1  # helm lint severities: 1 info, 2 warning, 3 error


def test_helm_lint_strict_finds_nothing_above_info() -> None:
    report = helm_python.lint(
        CHART_DIR, strict=True, namespace=NAMESPACE, kube_version=f"v{KUBERNETES_VERSION}"
    )
    assert report["errors"] == []
    serious = [m for m in report["messages"] if m["severity"] > INFO]
    assert serious == []


def test_packaged_chart_keeps_what_an_install_needs(tmp_path: Path) -> None:
    archive = helm_python.package(CHART_DIR, destination=tmp_path)
    with helm_python.Chart.load(archive) as chart:
        assert chart.schema is not None, "values.schema.json must ship, or nothing is validated"
        names = {f["name"] for f in chart.files}
        assert "README.md" in names
        assert [crd["name"] for crd in chart.crds] == ["crds/chatservices.chatservice.dev.yaml"]
        templates = {t["name"] for t in chart.templates}
        assert "templates/tests/test-health.yaml" in templates
        assert chart.metadata["kubeVersion"]
