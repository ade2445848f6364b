"""values.schema.json, enforced by the Helm engine at install: wrong types, unknown keys and
out-of-range numbers are refused before anything reaches the cluster."""

from __future__ import annotations

import json
from typing import Any

import pytest

from .rendering import CHART_DIR, SCENARIOS, RenderError, Scenario, render_values


@pytest.mark.parametrize(
    ("values", "complaint"),
    [
        # wrong types
        ({"chatService": {"replicas": "two"}}, "/chatService/replicas"),
        ({"operator": {"clusterWide": "yes"}}, "/operator/clusterWide"),
        ({"crds": {"enabled": 1}}, "/crds/enabled"),
        ({"chatService": {"backends": {"model": "x"}}}, "/chatService/backends"),
        ({"commonLabels": {"team": 7}}, "/commonLabels/team"),
        # unknown keys, at the top and deep down (a typo must not be silently ignored)
        ({"replicaCount": 3}, "replicaCount"),
        ({"chatService": {"replica": 3}}, "replica"),
        ({"chatService": {"probes": {"liveness": {"path": "/other"}}}}, "path"),
        ({"operator": {"image": {"registry": "quay.io"}}}, "registry"),
        ({"chatService": {"resources": {"requests": {"cpus": "1"}}}}, "cpus"),
        (
            {"chatService": {"backends": [{"model": "m", "baseURL": "http://u", "apiKey": "k"}]}},
            "apiKey",
        ),
        # out of range, malformed
        ({"chatService": {"workers": 0}}, "/chatService/workers"),
        ({"chatService": {"replicas": -1}}, "/chatService/replicas"),
        ({"chatService": {"autoscaling": {"targetCPUUtilizationPercentage": 101}}}, "targetCPU"),
        ({"chatService": {"probes": {"startup": {"failureThreshold": 0}}}}, "failureThreshold"),
        ({"operator": {"metricsPort": 80}}, "/operator/metricsPort"),
        ({"operator": {"image": {"digest": "sha256:abc"}}}, "/operator/image/digest"),
        ({"operator": {"image": {"pullPolicy": "Sometimes"}}}, "pullPolicy"),
        ({"chatService": {"backends": [{"model": "m", "baseURL": "vllm:8000"}]}}, "baseURL"),
        ({"chatService": {"resources": {"limits": {"memory": "lots"}}}}, "memory"),
        # what the CRD would refuse later, refused at install instead
        ({"chatService": {"backends": []}}, "/chatService/backends"),
        ({"chatService": {"backends": [{"model": "m"}]}}, "baseURL"),
        ({"chatService": {"backends": [{"model": "m", "backend": "vllm"}]}}, "backend"),
        (
            {
                "chatService": {
                    "backends": [
                        {"model": "m", "endpoints": [{"baseURL": "http://u"}], "discovery": "dns"}
                    ]
                }
            },
            "baseURL",
        ),
        (
            {
                "chatService": {
                    "backends": [{"model": "m", "baseURL": "http://u", "discovery": "srv"}]
                }
            },
            "discovery",
        ),
        ({"chatService": {"name": "a" * 45}}, "/chatService/name"),
        ({"chatService": {"podDisruptionBudget": {"maxUnavailable": 0}}}, "maxUnavailable"),
    ],
)
def test_bad_values_are_refused_at_install(values: dict[str, Any], complaint: str) -> None:
    with pytest.raises(RenderError, match="schema") as refused:
        render_values(values)
    assert complaint in str(refused.value)


@pytest.mark.parametrize(
    ("values", "complaint"),
    [
        # Rules the CRD enforces with CEL, which a JSON schema cannot express: checked by the
        # templates so that `helm install` fails, not the ChatService later.
        ({"fullnameOverride": "a-release-name-too-long-for-a-chatservice-name"}, "44"),
        (
            {"chatService": {"autoscaling": {"enabled": True, "minReplicas": 5, "maxReplicas": 2}}},
            "minReplicas",
        ),
    ],
)
def test_values_the_crd_would_refuse_fail_the_render(
    values: dict[str, Any], complaint: str
) -> None:
    with pytest.raises(RenderError, match=complaint):
        render_values(values)


@pytest.mark.parametrize("scenario", SCENARIOS, ids=[s.name for s in SCENARIOS])
def test_every_scenario_values_file_is_accepted(scenario: Scenario) -> None:
    render_values(scenario.load_values(), scenario.api_versions)


def _objects_without_closed_properties(schema: Any, path: str = "") -> list[str]:
    found = []
    if isinstance(schema, dict):
        if schema.get("type") == "object" and "additionalProperties" not in schema:
            found.append(path or "/")
        for key, value in schema.items():
            found += _objects_without_closed_properties(value, f"{path}/{key}")
    elif isinstance(schema, list):
        for index, item in enumerate(schema):
            found += _objects_without_closed_properties(item, f"{path}/{index}")
    return found


def test_every_object_in_the_schema_says_what_else_it_admits() -> None:
    schema = json.loads((CHART_DIR / "values.schema.json").read_text())
    # Free-form Kubernetes fragments (affinity terms) are the only objects left open.
    open_objects = [
        path
        for path in _objects_without_closed_properties(schema)
        if "/affinity/properties/" not in path
    ]
    assert open_objects == []
