"""The CRD and the chart's ChatServices as the API server admits them: every default checked
against its schema and CEL rules at CRD creation, every rendered object defaulted, pruned (with
nothing lost) and validated."""

from __future__ import annotations

import copy

import yaml

from tests.apiserver.crd_validation import admit, apply_defaults, crd_errors, version_schema

from .rendering import REPO_ROOT, Rendered, chart_crd, render_values

SOURCE = REPO_ROOT / "k8s" / "base" / "crd.yaml"


def test_the_api_server_accepts_the_crds_defaults() -> None:
    assert crd_errors(yaml.safe_load(SOURCE.read_text())) == []
    assert crd_errors(chart_crd()) == []


def test_a_default_that_fails_its_own_rule_is_refused_as_the_api_server_does() -> None:
    # The rule as it was before the has() guards: `default: {}` has no minReplicas to compare.
    crd = yaml.safe_load(SOURCE.read_text())
    spec = version_schema(crd, "v1alpha1")["properties"]["spec"]
    autoscaling = spec["properties"]["autoscaling"]
    autoscaling["x-kubernetes-validations"][0]["rule"] = "self.minReplicas <= self.maxReplicas"
    (error,) = crd_errors(crd)
    assert error.startswith(
        "spec.validation.openAPIV3Schema.properties[spec].properties[autoscaling].default: "
        "Invalid value: "
    )
    assert "minReplicas" in error


def test_every_rendered_chatservice_is_admitted_without_losing_a_field(
    rendered_with_chatservice: Rendered,
) -> None:
    crd = chart_crd()
    schema = version_schema(crd, "v1alpha1")
    for chatservice in rendered_with_chatservice.of_kind("ChatService"):
        stored, errors = admit(copy.deepcopy(chatservice), crd)
        assert errors == []
        # Pruning drops what the schema does not declare: a value the chart sets would be lost.
        assert stored == apply_defaults(schema, chatservice)


def test_the_first_install_creates_the_chatservice() -> None:
    # The plan of `helm install` on a cluster without the CRD: crds/ first (Helm waits until it
    # is established), then the templates, rendered without the ChatService API being served.
    first = render_values({}, api_versions=())
    (chatservice,) = first.of_kind("ChatService")
    stored, errors = admit(copy.deepcopy(chatservice), chart_crd())
    assert errors == []
    assert stored["metadata"]["name"] == "chatservice"
    assert len(first.of_kind("Deployment")) == 1, "and the operator that reconciles it"
