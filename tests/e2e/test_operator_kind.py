"""The operator on a real cluster (kind): install from k8s/, then the same flows as on kmock.

Needs a Docker engine, kind and kubectl; skipped (saying which is missing) elsewhere. It builds
both images from the project's Dockerfile, so `pytest -m e2e tests/e2e/test_operator_kind.py`
is self-contained. KEEP_KIND_CLUSTER=1 keeps the cluster for inspection.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
CLUSTER = "chatservice-operator-e2e"
NAMESPACE = "chatservice-system"
SERVICE_IMAGE = "chatservice:e2e"
NEXT_IMAGE = "chatservice:e2e-next"  # the same build under a new tag: a new migration hash
OPERATOR_IMAGE = "chatservice-operator:e2e"


def _missing() -> list[str]:
    problems = [
        f"{tool} is not on PATH" for tool in ("docker", "kind", "kubectl") if not shutil.which(tool)
    ]
    if (
        shutil.which("docker")
        and subprocess.run(["docker", "info"], capture_output=True).returncode
    ):
        problems.append("no Docker engine answers `docker info`")
    return problems


pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(
        bool(_missing()), reason=f"needs Docker, kind and kubectl: {'; '.join(_missing())}"
    ),
]


def run(*args: str, stdin: str | None = None) -> str:
    return subprocess.run(
        args, input=stdin, capture_output=True, text=True, check=True, cwd=ROOT
    ).stdout


def kubectl(*args: str, stdin: str | None = None) -> str:
    return run("kubectl", "--context", f"kind-{CLUSTER}", *args, stdin=stdin)


def chatservice() -> dict[str, Any]:
    return dict(json.loads(kubectl("-n", NAMESPACE, "get", "chatservice", "chat", "-o", "json")))


def wait_for(check: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = check()
        if result:
            return result
        time.sleep(2)
    pytest.fail(
        f"timed out after {timeout:.0f} s waiting for {what}: {chatservice().get('status')}"
    )


def condition(type_: str) -> tuple[str, str] | None:
    for c in chatservice().get("status", {}).get("conditions", []):
        if c["type"] == type_:
            return c["status"], c["reason"]
    return None


@pytest.fixture(scope="module")
def cluster() -> Iterator[None]:
    if CLUSTER not in run("kind", "get", "clusters").split():
        run("kind", "create", "cluster", "--name", CLUSTER, "--wait", "120s")
    run("docker", "build", "--target", "service", "-t", SERVICE_IMAGE, ".")
    run("docker", "build", "--target", "operator", "-t", OPERATOR_IMAGE, ".")
    run("docker", "tag", SERVICE_IMAGE, NEXT_IMAGE)
    for image in (SERVICE_IMAGE, NEXT_IMAGE, OPERATOR_IMAGE):
        run("kind", "load", "docker-image", image, "--name", CLUSTER)

    manifests = list(yaml.safe_load_all(run("kubectl", "kustomize", "k8s")))
    for doc in manifests:
        if doc["kind"] == "Deployment":
            doc["spec"]["template"]["spec"]["containers"][0]["image"] = OPERATOR_IMAGE
    kubectl("apply", "-f", "-", stdin=yaml.safe_dump_all(manifests))
    kubectl(
        "-n", NAMESPACE, "rollout", "status", "deployment/chatservice-operator", "--timeout=180s"
    )
    kubectl("apply", "-f", "k8s/examples/secrets.yaml", "-f", "k8s/examples/postgres.yaml")
    kubectl("-n", NAMESPACE, "rollout", "status", "deployment/chat-postgres", "--timeout=180s")
    try:
        yield
    finally:
        if not os.environ.get("KEEP_KIND_CLUSTER"):
            run("kind", "delete", "cluster", "--name", CLUSTER)


@pytest.mark.usefixtures("cluster")
def test_install_upgrade_and_failed_migration_on_kind() -> None:
    resource = yaml.safe_load((ROOT / "k8s/examples/chatservice.yaml").read_text())
    resource["spec"]["image"] = SERVICE_IMAGE
    # Only the local echo backend: the cluster has no model server.
    resource["spec"]["inference"]["backends"] = [{"model": "echo", "backend": "echo"}]
    kubectl("apply", "-f", "-", stdin=yaml.safe_dump(resource))

    wait_for(lambda: chatservice().get("status", {}).get("phase") == "Ready", 600, "Ready")
    assert chatservice()["status"]["currentImage"] == SERVICE_IMAGE
    assert "True" in kubectl("-n", NAMESPACE, "get", "chat", "chat")  # the Ready column

    # A new image migrates first (a second Job), then rolls out.
    jobs_before = set(kubectl("-n", NAMESPACE, "get", "jobs", "-o", "name").split())
    patch_spec({"image": NEXT_IMAGE})
    wait_for(lambda: chatservice()["status"].get("currentImage") == NEXT_IMAGE, 600, "upgrade")
    jobs_after = set(kubectl("-n", NAMESPACE, "get", "jobs", "-o", "name").split())
    assert len(jobs_after - jobs_before) == 1

    # An image that cannot run fails its migration; the running version keeps serving.
    patch_spec(
        {"image": "chatservice:missing", "migrations": {"backoffLimit": 0, "timeoutSeconds": 60}}
    )
    wait_for(
        lambda: condition("MigrationSucceeded") == ("False", "MigrationFailed"),
        300,
        "the failed migration",
    )
    assert condition("Degraded") == ("True", "MigrationFailed")
    deployment = json.loads(
        kubectl("-n", NAMESPACE, "get", "deployment", "chat-stable", "-o", "json")
    )
    assert deployment["spec"]["template"]["spec"]["containers"][0]["image"] == NEXT_IMAGE
    events = kubectl(
        "-n",
        NAMESPACE,
        "get",
        "events",
        "--field-selector",
        "involvedObject.name=chat,reason=MigrationFailed",
        "-o",
        "name",
    )
    assert events.strip()


def patch_spec(spec: dict[str, object]) -> None:
    patch = json.dumps({"spec": spec})
    kubectl("-n", NAMESPACE, "patch", "chat", "chat", "--type=merge", "-p", patch)
