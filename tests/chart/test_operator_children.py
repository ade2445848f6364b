"""What a chart install finally runs: the chart's ChatService fed through the operator's own
parser and builders (pure functions, no cluster). The service pods and the migration Job must be
valid Kubernetes objects, meet the restricted profile, and carry the chart's probes and image."""

from __future__ import annotations

import copy
from typing import Any

import kubernetes_validate

from chatservice_operator import builders, reconcile
from tests.versions import KUBERNETES_VERSION

from .rendering import NAMESPACE, Manifest, Rendered
from .test_pod_security import IMAGE_UID, restricted_violations


def operator_children(chatservice: Manifest) -> dict[str, Manifest]:
    body: dict[str, Any] = copy.deepcopy(chatservice)
    # What the API server adds on create.
    body["metadata"].update(uid="00000000-0000-0000-0000-000000000001", generation=1)
    cs = reconcile.parse(body)
    configmap = builders.build_configmap(cs)
    children: dict[str, Manifest] = {
        "configmap": configmap,
        "job": builders.build_job(cs),
        "deployment": builders.build_deployment(
            cs, cs.spec.image, builders.config_checksum(configmap)
        ),
        "service": builders.build_service(cs),
        "pdb": builders.build_pdb(cs),
        "hpa": builders.build_hpa(cs),
    }
    return children


def chart_chatservices(rendered: Rendered) -> list[Manifest]:
    found = rendered.of_kind("ChatService")
    assert found, "this scenario should hold the ChatService from values"
    return found


def test_operator_children_are_valid_kubernetes_objects(
    rendered_with_chatservice: Rendered,
) -> None:
    rendered = rendered_with_chatservice
    for chatservice in chart_chatservices(rendered):
        for child in operator_children(chatservice).values():
            kubernetes_validate.validate(child, KUBERNETES_VERSION, strict=True)
            assert child["metadata"]["namespace"] == NAMESPACE


def test_service_pods_and_migration_job_meet_the_restricted_profile(
    rendered_with_chatservice: Rendered,
) -> None:
    rendered = rendered_with_chatservice
    for chatservice in chart_chatservices(rendered):
        children = operator_children(chatservice)
        for kind in ("deployment", "job"):
            pod = children[kind]["spec"]["template"]["spec"]
            assert restricted_violations(pod) == [], kind
            assert pod["securityContext"]["runAsUser"] == IMAGE_UID
            for container in pod["containers"]:
                assert container["securityContext"]["readOnlyRootFilesystem"] is True


def test_service_pods_run_the_chart_image_and_probes(rendered_with_chatservice: Rendered) -> None:
    rendered = rendered_with_chatservice
    for chatservice in chart_chatservices(rendered):
        children = operator_children(chatservice)
        spec = chatservice["spec"]
        (server,) = children["deployment"]["spec"]["template"]["spec"]["containers"]
        assert server["image"] == spec["image"]
        for tier, probe in (
            ("liveness", server["livenessProbe"]),
            ("readiness", server["readinessProbe"]),
            ("startup", server["startupProbe"]),
        ):
            assert probe["httpGet"]["path"] == spec["probes"][tier]["path"]
            assert probe["periodSeconds"] == spec["probes"][tier]["periodSeconds"]
        (migrate,) = children["job"]["spec"]["template"]["spec"]["containers"]
        assert migrate["image"] == spec["image"]


def test_helm_test_hook_reaches_the_operator_service(rendered_with_chatservice: Rendered) -> None:
    rendered = rendered_with_chatservice
    # The hook calls http://<ChatService name>:<tests.servicePort>; the operator names and
    # numbers the Service. A mismatch would fail every `helm test`.
    for chatservice in chart_chatservices(rendered):
        service = operator_children(chatservice)["service"]
        ports = [port["port"] for port in service["spec"]["ports"]]
        hooks = rendered.of_kind("Pod")
        assert hooks
        script = hooks[0]["spec"]["containers"][0]["args"][0]
        url = f"http://{service['metadata']['name']}.{NAMESPACE}.svc:{ports[0]}/api/v1/health/"
        assert url in script
