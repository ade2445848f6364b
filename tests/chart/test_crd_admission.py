"""The CRD and the chart's ChatServices as the API server admits them: every default checked
against its schema and CEL rules at CRD creation, every rendered object defaulted, pruned (with
nothing lost) and validated."""

from __future__ import annotations

import copy

import pytest
import yaml

from chatservice_operator.resource import ChatServiceSpec
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


def _with_backends(*backends: dict[str, object]) -> dict[str, object]:
    chatservice = _chatservice({})
    spec = chatservice["spec"]
    assert isinstance(spec, dict)
    spec["inference"] = {"backends": list(backends)}
    return chatservice


def test_a_backend_discovered_from_dns_is_admitted_on_baseurl_or_an_endpoint() -> None:
    stored, errors = admit(
        _with_backends(
            {"model": "a", "baseURL": "http://vllm.models.svc:8000/v1", "discovery": "dns"},
            {"model": "b", "endpoints": [{"baseURL": "http://tgi:80/v1", "discovery": "dns"}]},
        ),
        chart_crd(),
    )
    assert errors == []
    backends = stored["spec"]["inference"]["backends"]
    assert [backends[0]["discovery"], backends[1]["endpoints"][0]["discovery"]] == ["dns", "dns"]


@pytest.mark.parametrize(
    ("backend", "message"),
    [
        (
            {"model": "a", "endpoints": [{"baseURL": "http://tgi/v1"}], "discovery": "dns"},
            "discovery applies to baseURL",
        ),
        ({"model": "a", "baseURL": "http://vllm/v1", "discovery": "srv"}, "discovery"),
    ],
)
def test_the_api_server_refuses_discovery_it_cannot_apply(
    backend: dict[str, object], message: str
) -> None:
    _, errors = admit(_with_backends(backend), chart_crd())
    assert any(message in error for error in errors), errors


def _chatservice(canary: dict[str, object]) -> dict[str, object]:
    return {
        "apiVersion": "chatservice.dev/v1alpha1",
        "kind": "ChatService",
        "metadata": {"name": "chat", "namespace": "ns"},
        "spec": {
            "image": "reg.example/chat:1.0",
            "database": {"urlSecretRef": {"name": "db", "key": "url"}},
            "auth": {"adminKeySecretRef": {"name": "adm", "key": "key"}},
            "inference": {"backends": [{"model": "echo", "backend": "echo"}]},
            "rollout": {"canary": canary},
        },
    }


@pytest.mark.parametrize(
    ("canary", "message"),
    [
        ({"replicas": 0}, "replicas must be a count of at least 1 or a percentage"),
        ({"replicas": "0%"}, "replicas must be a count of at least 1 or a percentage"),
        ({"replicas": "150%"}, "replicas must be a count of at least 1 or a percentage"),
        ({"replicas": "two"}, "replicas must be a count of at least 1 or a percentage"),
        ({"duration": "0s"}, "duration must be at least 1s"),
        ({"duration": "10 min"}, "duration"),
        ({"minRequests": -1}, "minRequests"),
        ({"prometheusURL": "prometheus:9090"}, "prometheusURL"),
        ({"thresholds": {"errorRatio": {"maxIncrease": 2}}}, "maxIncrease"),
        ({"thresholds": {"timeToFirstTokenP95": {"maxRatio": 0.5}}}, "maxRatio"),
    ],
)
def test_the_api_server_refuses_a_canary_that_cannot_work(
    canary: dict[str, object], message: str
) -> None:
    _, errors = admit(_chatservice(canary), chart_crd())
    assert any(message in error for error in errors), errors


@pytest.mark.parametrize("replicas", [1, 3, "10%", "100%"])
def test_a_canary_as_a_count_or_a_percentage_is_admitted(replicas: object) -> None:
    _, errors = admit(_chatservice({"enabled": True, "replicas": replicas}), chart_crd())
    assert errors == []


def test_the_canary_defaults_of_the_crd_and_of_the_operator_agree() -> None:
    # A resource read where defaulting did not happen must mean what the defaulted one means.
    stored, errors = admit(_chatservice({}), chart_crd())
    assert errors == []
    defaulted = ChatServiceSpec.model_validate(stored["spec"]).rollout.canary
    assert defaulted == ChatServiceSpec.model_validate(_chatservice({})["spec"]).rollout.canary
    assert stored["spec"]["rollout"]["canary"]["enabled"] is False
