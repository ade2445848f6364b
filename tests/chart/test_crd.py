"""The chart's CRD (crds/) is k8s/base/crd.yaml (the operator's source of truth) byte for byte,
and the pre-upgrade hook applies exactly that CRD, with a ClusterRole for that CRD only."""

from __future__ import annotations

from typing import Any

import yaml

from .rendering import CHART_DIR, CRD_FILE, REPO_ROOT, Rendered, chart_crd, render_values

SOURCE = REPO_ROOT / "k8s" / "base" / "crd.yaml"
HOOK = "templates/crd-upgrade.yaml"


def test_chart_crd_is_the_operator_crd() -> None:
    assert CRD_FILE.read_text() == SOURCE.read_text(), (
        f"{CRD_FILE.relative_to(REPO_ROOT)} drifted from {SOURCE.relative_to(REPO_ROOT)}: "
        "run `make generate`"
    )
    assert [p.name for p in (CHART_DIR / "crds").iterdir()] == [CRD_FILE.name]


def test_every_status_field_the_brief_names_is_in_the_schema() -> None:
    # Kopf silently loses status fields that the CRD schema does not declare.
    (version,) = [v for v in chart_crd()["spec"]["versions"] if v["storage"]]
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
    for version in chart_crd()["spec"]["versions"]:
        schema = version["schema"]["openAPIV3Schema"]
        assert _malformed_properties(schema, version["name"]) == []


def hook_objects(rendered: Rendered) -> dict[str, dict[str, Any]]:
    return {obj["kind"]: obj for source, obj in rendered.objects if source.endswith(HOOK)}


def test_the_upgrade_hook_applies_the_chart_crd_and_may_patch_only_it() -> None:
    hook = hook_objects(render_values({}))
    assert set(hook) == {"ServiceAccount", "ClusterRole", "ClusterRoleBinding", "ConfigMap", "Job"}
    for obj in hook.values():
        annotations = obj["metadata"]["annotations"]
        # pre-upgrade only: on install Helm creates crds/ itself.
        assert annotations["helm.sh/hook"] == "pre-upgrade"
        assert "hook-succeeded" in annotations["helm.sh/hook-delete-policy"]
    assert int(hook["Job"]["metadata"]["annotations"]["helm.sh/hook-weight"]) > int(
        hook["ClusterRole"]["metadata"]["annotations"]["helm.sh/hook-weight"]
    )
    assert yaml.safe_load(hook["ConfigMap"]["data"]["crd.yaml"]) == chart_crd()
    assert hook["ClusterRole"]["rules"] == [
        {
            "apiGroups": ["apiextensions.k8s.io"],
            "resources": ["customresourcedefinitions"],
            "resourceNames": ["chatservices.chatservice.dev"],
            "verbs": ["patch"],
        }
    ]
    pod = hook["Job"]["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == hook["ServiceAccount"]["metadata"]["name"]
    assert pod["containers"][0]["command"] == ["chatservice-operator", "--apply-crd=/crd/crd.yaml"]


def test_the_upgrade_hook_can_be_left_out() -> None:
    assert hook_objects(render_values({"crds": {"enabled": False}})) == {}
