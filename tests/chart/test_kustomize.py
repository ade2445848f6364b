"""The plain manifests (`kubectl apply -k k8s` without Helm): `kubectl kustomize k8s` renders,
every object is valid for Kubernetes, and the chart and the manifests agree on the CRD."""

from __future__ import annotations

import shutil
import subprocess
from typing import Any

import kubernetes_validate
import pytest
import yaml

from . import crd_schema
from .rendering import KUBERNETES_VERSION, REPO_ROOT

K8S_DIR = REPO_ROOT / "k8s"


@pytest.fixture(scope="module")
def kustomized() -> list[dict[str, Any]]:
    if not (K8S_DIR / "kustomization.yaml").exists():
        pytest.skip("k8s/kustomization.yaml is not on this branch yet (operator branch)")
    kubectl = shutil.which("kubectl")
    if not kubectl:
        pytest.skip("kubectl is not installed (it embeds kustomize)")
    result = subprocess.run(
        [kubectl, "kustomize", str(K8S_DIR)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


def test_kustomize_objects_are_valid_for_kubernetes(kustomized: list[dict[str, Any]]) -> None:
    assert kustomized
    for obj in kustomized:
        if obj["kind"] in {"ChatService", "ServiceMonitor", "PrometheusRule"}:
            continue
        kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)


def test_kustomize_chatservices_fit_the_crd(kustomized: list[dict[str, Any]]) -> None:
    crds = [o for o in kustomized if o["kind"] == "CustomResourceDefinition"]
    assert len(crds) == 1
    for chatservice in (o for o in kustomized if o["kind"] == "ChatService"):
        crd_schema.validate(chatservice, crds[0])


def test_examples_fit_the_crd() -> None:
    examples = sorted((K8S_DIR / "examples").glob("*.yaml"))
    crd_file = K8S_DIR / "base" / "crd.yaml"
    if not examples or not crd_file.exists():
        pytest.skip("k8s/examples and k8s/base/crd.yaml are not on this branch yet")
    crd = yaml.safe_load(crd_file.read_text())
    for example in examples:
        for obj in yaml.safe_load_all(example.read_text()):
            if not obj or obj["kind"] == "Kustomization":
                continue
            if obj["kind"] == "ChatService":
                crd_schema.validate(obj, crd)
            else:
                kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)
