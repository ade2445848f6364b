"""Renders the chart with the real Helm engine: the `helm` binary when on PATH, else the Helm 4
SDK embedded in helm-python-sdk. Both validate values against values.schema.json first."""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from tests.versions import KUBERNETES_VERSION

REPO_ROOT = Path(__file__).resolve().parents[2]
CHART_DIR = REPO_ROOT / "charts" / "chatservice"
VALUES_DIR = Path(__file__).resolve().parent / "values"

RELEASE = "chatservice"
NAMESPACE = "chatservice"
MONITORING_API = "monitoring.coreos.com/v1"
# Served once the chart's CRD is installed: on every upgrade, but not on the very first install.
CHATSERVICE_API = "chatservice.dev/v1alpha1"
# Installed by Helm as they are (never templated), before the templates, on `helm install` only.
CRD_FILE = CHART_DIR / "crds" / "chatservices.chatservice.dev.yaml"

Manifest = dict[str, Any]


class RenderError(Exception):
    """The engine refused the chart or its values (schema violation, template failure)."""


@dataclass(frozen=True)
class Scenario:
    """One way to install the chart: a values file and what the cluster offers."""

    name: str
    values_file: str | None = None
    api_versions: tuple[str, ...] = ()
    values: dict[str, Any] = field(default_factory=dict)

    def creates_chatservice(self) -> bool:
        """Whether this render should hold the ChatService from values."""
        return bool(self.load_values().get("chatService", {}).get("create", True))

    def load_values(self) -> dict[str, Any]:
        merged: dict[str, Any] = {}
        if self.values_file:
            loaded = yaml.safe_load((VALUES_DIR / self.values_file).read_text())
            merged.update(loaded or {})
        merged.update(self.values)
        return merged


SCENARIOS = [
    Scenario("defaults", api_versions=(CHATSERVICE_API,)),
    Scenario("defaults-with-monitoring-api", api_versions=(CHATSERVICE_API, MONITORING_API)),
    Scenario("all-features", "all-features.yaml", api_versions=(CHATSERVICE_API, MONITORING_API)),
    Scenario("cluster-wide", "cluster-wide.yaml", api_versions=(CHATSERVICE_API,)),
    Scenario("no-chatservice", "no-chatservice.yaml", api_versions=(CHATSERVICE_API,)),
    Scenario("digest", "digest.yaml", api_versions=(CHATSERVICE_API,)),
    # A cluster that has never seen the CRD: the first `helm install` of the defaults.
    Scenario("first-install"),
]


@dataclass(frozen=True)
class Rendered:
    """The objects of one render, each with the template it came from, and NOTES.txt."""

    objects: list[tuple[str, Manifest]]
    notes: str

    def without_hooks(self) -> Rendered:
        """The objects the release keeps (hooks run and go: `helm test`, the CRD upgrade)."""
        kept = [
            (source, obj)
            for source, obj in self.objects
            if "helm.sh/hook" not in (obj["metadata"].get("annotations") or {})
        ]
        return Rendered(objects=kept, notes=self.notes)

    def manifests(self) -> list[Manifest]:
        return [obj for _, obj in self.objects]

    def of_kind(self, kind: str) -> list[Manifest]:
        return [obj for obj in self.manifests() if obj["kind"] == kind]

    def one(self, kind: str) -> Manifest:
        found = self.of_kind(kind)
        assert len(found) == 1, f"expected one {kind}, rendered {len(found)}"
        return found[0]

    def pod_specs(self) -> Iterator[tuple[Manifest, Manifest]]:
        """(owner object, pod spec) for every pod the chart itself creates."""
        for obj in self.manifests():
            if obj["kind"] == "Pod":
                yield obj, obj["spec"]
            elif obj["kind"] in {"Deployment", "StatefulSet", "DaemonSet", "Job"}:
                yield obj, obj["spec"]["template"]["spec"]


def _split(source: str, text: str) -> list[tuple[str, Manifest]]:
    return [(source, doc) for doc in yaml.safe_load_all(text) if doc]


def _render_with_binary(
    helm: str, values: dict[str, Any], api_versions: Sequence[str]
) -> dict[str, str]:
    with tempfile.NamedTemporaryFile("w", suffix=".json") as values_file:
        json.dump(values, values_file)
        values_file.flush()
        args = [helm, "template", RELEASE, str(CHART_DIR), "--namespace", NAMESPACE]
        args += ["--values", values_file.name, "--kube-version", KUBERNETES_VERSION]
        for api in api_versions:
            args += ["--api-versions", api]
        result = subprocess.run(args, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise RenderError(result.stderr)
    # `helm template` prints NOTES.txt only on request; the SDK path returns it as a template.
    return {"rendered": result.stdout}


def _render_with_sdk(values: dict[str, Any], api_versions: Sequence[str]) -> dict[str, str]:
    import helm_python
    from helm_python import _native

    # Chart.render() does not expose the engine's api_versions/kube_version options (what
    # `helm template --api-versions/--kube-version` set), so the same native call is made with
    # them; without this the Capabilities-gated templates could not be rendered at all.
    options = {
        "name": RELEASE,
        "namespace": NAMESPACE,
        "is_install": True,
        "kube_version": f"v{KUBERNETES_VERSION}",
        "api_versions": list(api_versions),
    }
    try:
        with helm_python.Chart.load(CHART_DIR) as chart:
            rendered: dict[str, str] = json.loads(
                _native.call_string(
                    "helm_render", chart._raw(), json.dumps(values), json.dumps(options)
                )
            )
    except helm_python.HelmError as error:
        raise RenderError(str(error)) from error
    return rendered


def render_values(
    values: dict[str, Any], api_versions: Sequence[str] = (CHATSERVICE_API,)
) -> Rendered:
    helm = shutil.which("helm")
    if helm:
        templates = _render_with_binary(helm, values, api_versions)
        notes = ""
    else:
        templates = _render_with_sdk(values, api_versions)
        notes = next((text for name, text in templates.items() if name.endswith("NOTES.txt")), "")
    objects: list[tuple[str, Manifest]] = []
    for source, text in sorted(templates.items()):
        if not source.endswith("NOTES.txt"):
            objects += _split(source, text)
    return Rendered(objects=objects, notes=notes)


def chart_crd() -> Manifest:
    crd: Manifest = yaml.safe_load(CRD_FILE.read_text())
    return crd


def render(scenario: Scenario) -> Rendered:
    return render_values(scenario.load_values(), scenario.api_versions)
