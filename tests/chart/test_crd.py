"""The chart's CRD is k8s/base/crd.yaml (the operator's source of truth) plus the chart's labels
and keep annotation, nothing else; and the chart's ChatService fits it."""

from __future__ import annotations

import copy
from typing import Any

import pytest
import yaml

from .rendering import CHART_DIR, REPO_ROOT, render_values

SOURCE = REPO_ROOT / "k8s" / "base" / "crd.yaml"
CHART_COPY = CHART_DIR / "files" / "crd.yaml"


def _without_chart_metadata(crd: dict[str, Any]) -> dict[str, Any]:
    """The CRD without the standard labels and the keep annotation, which the chart sets."""
    stripped = copy.deepcopy(crd)
    metadata = stripped["metadata"]
    labels = {
        key: value
        for key, value in metadata.pop("labels", {}).items()
        if not key.startswith(("app.kubernetes.io/", "helm.sh/"))
    }
    annotations = {
        key: value
        for key, value in metadata.pop("annotations", {}).items()
        if key != "helm.sh/resource-policy"
    }
    if labels:
        metadata["labels"] = labels
    if annotations:
        metadata["annotations"] = annotations
    return stripped


def test_chart_crd_is_the_operator_crd() -> None:
    if not SOURCE.exists():
        pytest.skip(f"{SOURCE.relative_to(REPO_ROOT)} not on this branch yet (operator branch)")
    source = yaml.safe_load(SOURCE.read_text())
    rendered = render_values({}).one("CustomResourceDefinition")
    assert _without_chart_metadata(rendered) == _without_chart_metadata(source), (
        f"the chart's CRD drifted: cp {SOURCE.relative_to(REPO_ROOT)} "
        f"{CHART_COPY.relative_to(REPO_ROOT)}"
    )


def test_the_rendered_crd_adds_only_labels_and_the_keep_annotation() -> None:
    chart_copy = yaml.safe_load(CHART_COPY.read_text())
    rendered = render_values({}).one("CustomResourceDefinition")
    assert _without_chart_metadata(rendered) == _without_chart_metadata(chart_copy)
    assert rendered["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"


def test_every_status_field_the_brief_names_is_in_the_schema() -> None:
    # Kopf silently loses status fields that the CRD schema does not declare.
    crd = render_values({}).one("CustomResourceDefinition")
    (version,) = [v for v in crd["spec"]["versions"] if v["storage"]]
    status = version["schema"]["openAPIV3Schema"]["properties"]["status"]["properties"]
    for field in ("observedGeneration", "phase", "currentImage", "conditions"):
        assert field in status
    assert "status" in version["subresources"]


def _malformed_properties(schema: Any, path: str) -> list[str]:
    """Paths where `properties` is not a mapping of field schemas (e.g. null from a bad indent)."""
    found = []
    if isinstance(schema, dict):
        if "properties" in schema and not isinstance(schema["properties"], dict):
            found.append(f"{path}.properties")
        for key, value in schema.items():
            found += _malformed_properties(value, f"{path}.{key}")
    elif isinstance(schema, list):
        for index, item in enumerate(schema):
            found += _malformed_properties(item, f"{path}[{index}]")
    return found


def test_crd_schema_declares_every_object_field() -> None:
    # An object schema whose `properties` is null declares no field: the API server prunes
    # whatever a user writes there, so the setting is silently lost.
    crd = render_values({}).one("CustomResourceDefinition")
    for version in crd["spec"]["versions"]:
        schema = version["schema"]["openAPIV3Schema"]
        assert _malformed_properties(schema, version["name"]) == []
