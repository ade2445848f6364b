"""The CRD, the kustomize base and the examples: valid for Kubernetes and for each other."""

from __future__ import annotations

import copy
import subprocess
import typing
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml
from pydantic import BaseModel

from chatservice_operator import builders
from chatservice_operator.rbac import RULES
from chatservice_operator.resource import ChatServiceSpec, ChatServiceStatus
from tests.apiserver.crd_validation import apply_defaults, cel_errors
from tests.operator.operator_specs import chatservice
from tests.versions import OLDEST_KUBERNETES_VERSION

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "k8s"
CRD_PATH = K8S / "base" / "crd.yaml"


def load_all(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


def kustomize(path: Path) -> list[dict[str, Any]]:
    rendered = subprocess.run(
        ["kubectl", "kustomize", str(path)], check=True, capture_output=True, text=True
    ).stdout
    return [doc for doc in yaml.safe_load_all(rendered) if doc]


CRD = load_all(CRD_PATH)[0]
VERSION = CRD["spec"]["versions"][0]
SCHEMA = VERSION["schema"]["openAPIV3Schema"]


def validate_against_crd(resource: dict[str, Any]) -> dict[str, Any]:
    defaulted: dict[str, Any] = apply_defaults(SCHEMA, resource)
    jsonschema.Draft7Validator(SCHEMA).validate(defaulted)
    return defaulted


def example_chatservices() -> list[dict[str, Any]]:
    return [
        doc
        for path in sorted((K8S / "examples").glob("*.yaml"))
        for doc in load_all(path)
        if doc.get("kind") == "ChatService"
    ]


def test_crd_identity_scope_and_printer_columns() -> None:
    spec = CRD["spec"]
    assert CRD["metadata"]["name"] == "chatservices.chatservice.dev"
    assert (spec["group"], spec["scope"]) == ("chatservice.dev", "Namespaced")
    assert spec["names"]["kind"] == "ChatService"
    assert spec["names"]["plural"] == "chatservices"
    assert spec["names"]["shortNames"] == ["chat"]
    assert [v["name"] for v in spec["versions"]] == ["v1alpha1"]
    assert VERSION["subresources"] == {"status": {}}
    columns = {c["name"]: c["jsonPath"] for c in VERSION["additionalPrinterColumns"]}
    assert columns == {
        "Phase": ".status.phase",
        "Ready": '.status.conditions[?(@.type=="Ready")].status',
        "Image": ".status.currentImage",
        "Age": ".metadata.creationTimestamp",
    }


def test_crd_is_a_valid_kubernetes_object() -> None:
    kubernetes_validate.validate(CRD, OLDEST_KUBERNETES_VERSION, strict=True)


def _schema_fields(schema: dict[str, Any]) -> Any:
    if schema.get("type") == "array":
        return [_schema_fields(schema["items"])]
    if "properties" in schema:
        return {key: _schema_fields(sub) for key, sub in schema["properties"].items()}
    return None


def _model_fields(model: type[BaseModel]) -> Any:
    """The camelCase field tree of a Pydantic model, shaped like _schema_fields()."""
    fields: dict[str, Any] = {}
    for name, info in model.model_fields.items():
        alias = info.alias or name
        annotation = info.annotation
        if typing.get_origin(annotation) is tuple:
            item = typing.get_args(annotation)[0]
            is_model = isinstance(item, type) and issubclass(item, BaseModel)
            fields[alias] = [_model_fields(item) if is_model else None]  # (a list of strings)
            continue
        options = typing.get_args(annotation) or (annotation,)  # X | None, or X itself
        nested = [o for o in options if isinstance(o, type) and issubclass(o, BaseModel)]
        fields[alias] = _model_fields(nested[0]) if nested else None
    return fields


def test_crd_spec_schema_and_spec_model_have_the_same_fields() -> None:
    assert _schema_fields(SCHEMA["properties"]["spec"]) == _model_fields(ChatServiceSpec)


def test_crd_status_schema_holds_every_status_field() -> None:
    # Fields missing from the schema are pruned by the API server and silently lost.
    assert _schema_fields(SCHEMA["properties"]["status"]) == _model_fields(ChatServiceStatus)


@pytest.mark.parametrize(
    "resource", example_chatservices(), ids=lambda r: str(r["metadata"]["name"])
)
def test_example_validates_against_the_crd_and_parses_as_the_model(
    resource: dict[str, Any],
) -> None:
    defaulted = validate_against_crd(resource)
    # The CRD's defaults and the model's agree: the same spec with or without them.
    assert ChatServiceSpec.model_validate(defaulted["spec"]) == ChatServiceSpec.model_validate(
        resource["spec"]
    )


def test_there_is_an_example_chatservice() -> None:
    assert [r["metadata"]["name"] for r in example_chatservices()] == ["chat"]


@pytest.mark.parametrize(
    "change",
    [
        {"image": ""},
        {"replicas": -1},
        {"logLevel": "verbose"},
        {"inference": {"backends": []}},
        {"inference": {"backends": [{"model": "x", "baseURL": "ftp://x"}]}},
        {"rollout": {"progressDeadlineSeconds": 1}},
        {"database": {}},
    ],
)
def test_crd_schema_rejects_invalid_specs(change: dict[str, Any]) -> None:
    resource = copy.deepcopy(example_chatservices()[0])
    resource["spec"].update(change)
    with pytest.raises(jsonschema.ValidationError):
        validate_against_crd(resource)


def cel_violations(schema: dict[str, Any], value: Any) -> list[str]:
    """The messages of the CEL rules the (defaulted) value breaks, as the API server words them."""
    return [error.partition("Invalid value: ")[2] for error in cel_errors(schema, value, "")]


def test_examples_pass_the_cel_rules() -> None:
    for resource in example_chatservices():
        assert cel_violations(SCHEMA, apply_defaults(SCHEMA, resource)) == []


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"metadata": {"name": "x" * 45}}, "metadata.name must be at most 44 characters"),
        ({"spec": {"autoscaling": {"minReplicas": 5, "maxReplicas": 2}}}, "minReplicas must be"),
        ({"spec": {"inference": {"backends": [{"model": "m"}]}}}, "an openai backend needs"),
    ],
)
def test_cel_rules_reject_what_they_promise(change: dict[str, Any], message: str) -> None:
    resource = copy.deepcopy(example_chatservices()[0])
    for section, fields in change.items():
        resource[section].update(fields)
    violations = cel_violations(SCHEMA, apply_defaults(SCHEMA, resource))
    assert len(violations) == 1
    assert violations[0].startswith(message)


def test_kustomize_renders_the_base() -> None:
    kinds = sorted(doc["kind"] for doc in kustomize(K8S))
    assert kinds == [
        "CustomResourceDefinition",
        "Deployment",
        "Namespace",
        "Role",
        "RoleBinding",
        "ServiceAccount",
    ]


@pytest.mark.parametrize("path", [K8S, K8S / "examples"], ids=["base", "examples"])
def test_every_manifest_is_valid_kubernetes(path: Path) -> None:
    for doc in kustomize(path):
        if doc["kind"] == "ChatService":
            validate_against_crd(doc)
        else:
            kubernetes_validate.validate(doc, OLDEST_KUBERNETES_VERSION, strict=True)


def test_the_crd_in_the_base_is_the_single_source() -> None:
    rendered = next(d for d in kustomize(K8S) if d["kind"] == "CustomResourceDefinition")
    assert rendered == CRD


def test_every_child_the_operator_builds_is_valid_kubernetes() -> None:
    cs = chatservice(autoscaling={"enabled": True})
    children = [
        builders.build_configmap(cs),
        builders.build_job(cs),
        builders.build_deployment(cs, cs.spec.image, "checksum"),
        builders.build_service(cs),
        builders.build_hpa(cs),
        builders.build_pdb(cs),
    ]
    for child in children:
        kubernetes_validate.validate(child, OLDEST_KUBERNETES_VERSION, strict=True)


def test_operator_deployment_runs_one_restricted_replica_with_liveness() -> None:
    deployment = next(d for d in kustomize(K8S) if d["kind"] == "Deployment")
    spec = deployment["spec"]
    assert spec["replicas"] == 1
    assert spec["strategy"] == {"type": "Recreate"}
    pod = spec["template"]["spec"]
    container = pod["containers"][0]
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "healthz"}
    assert {p["name"]: p["containerPort"] for p in container["ports"]} == {
        "healthz": 8080,
        "metrics": 9090,
    }
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert container["securityContext"] == {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "runAsNonRoot": True,
        "capabilities": {"drop": ["ALL"]},
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    assert pod["serviceAccountName"] == "chatservice-operator"


def test_rbac_manifests_grant_exactly_the_rules_in_the_module() -> None:
    docs = {doc["kind"]: doc for doc in kustomize(K8S)}
    assert docs["Role"]["rules"] == RULES, "k8s/base/rbac.yaml drifted: run `make generate`"
    assert "ClusterRole" not in docs, "a namespaced operator needs nothing cluster-scoped"
    binding = docs["RoleBinding"]
    assert binding["roleRef"]["name"] == docs["Role"]["metadata"]["name"]
    assert binding["subjects"] == [
        {
            "kind": "ServiceAccount",
            "name": "chatservice-operator",
            "namespace": "chatservice-system",
        }
    ]


def test_example_secrets_are_marked_as_placeholders() -> None:
    secrets = [d for d in load_all(K8S / "examples" / "secrets.yaml") if d["kind"] == "Secret"]
    assert secrets
    for secret in secrets:
        assert secret["metadata"]["labels"]["chatservice.dev/example"] == "placeholder"
        assert all("PLACEHOLDER" in value for value in secret["stringData"].values())
