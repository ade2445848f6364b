"""The values `make deploy` and the e2e tests install with, checked here without a cluster: a
client-side `helm install --dry-run` through the same SDK call accepts them and yields the
images that `make image` builds."""

from __future__ import annotations

import helm_python
import yaml

from tools.cluster import CHART_DIR, Target, chart_values

EMPTY_KUBECONFIG = "apiVersion: v1\nkind: Config\nclusters: []\ncontexts: []\nusers: []\n"


def test_deploy_values_pass_a_dry_run_install() -> None:
    target = Target()
    with helm_python.Config(
        kubeconfig_content=EMPTY_KUBECONFIG, namespace=target.namespace
    ) as config:
        release = config.install(
            str(CHART_DIR),
            target.release,
            chart_values(target),
            namespace=target.namespace,
            dry_run="client",
        )
    objects = [doc for doc in yaml.safe_load_all(release["manifest"]) if doc]
    (operator,) = [obj for obj in objects if obj["kind"] == "Deployment"]
    assert operator["spec"]["template"]["spec"]["containers"][0]["image"] == (target.operator_image)
    # A client-side dry run knows no CRD, like a first install: the ChatService is part of it.
    (chatservice,) = [obj for obj in objects if obj["kind"] == "ChatService"]
    assert chatservice["metadata"]["namespace"] == target.namespace
    assert "helm upgrade" not in release["notes"]
    assert target.database_secret in release["notes"]
