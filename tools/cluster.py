"""Puts ChatService on a kind cluster, for `make deploy` and the e2e tests alike: loads the
images, starts a throwaway PostgreSQL, creates the Secrets (once), installs or upgrades the chart
with the Helm engine (the helm-python-sdk; no `helm` binary needed) and waits until the
ChatService is Ready.

    python -m tools.cluster deploy [--cluster chatservice] [--namespace chatservice] [--tag dev]
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import json
import secrets
import shutil
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.ports import free_port

REPO_ROOT = Path(__file__).resolve().parents[1]
CHART_DIR = REPO_ROOT / "charts" / "chatservice"
POSTGRES_MANIFEST = Path(__file__).resolve().parent / "manifests" / "postgres.yaml"
POSTGRES_SECRET = "chatservice-e2e-postgres"


@dataclass(frozen=True)
class Target:
    """Where and what to deploy."""

    cluster: str = "chatservice"
    namespace: str = "chatservice"
    release: str = "chatservice"
    image_repository: str = "chatservice"
    operator_repository: str = "chatservice-operator"
    tag: str = "dev"

    @property
    def context(self) -> str:
        return f"kind-{self.cluster}"

    @property
    def image(self) -> str:
        return f"{self.image_repository}:{self.tag}"

    @property
    def operator_image(self) -> str:
        return f"{self.operator_repository}:{self.tag}"

    @property
    def database_secret(self) -> str:
        return f"{self.release}-e2e-database"

    @property
    def admin_secret(self) -> str:
        return f"{self.release}-e2e-admin"


def run(*args: str, stdin: str | None = None, timeout: float = 600) -> str:
    result = subprocess.run(
        list(args), input=stdin, capture_output=True, text=True, timeout=timeout, check=False
    )
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} failed ({result.returncode}):\n{result.stderr}")
    return result.stdout


def kubectl(target: Target, *args: str, stdin: str | None = None, timeout: float = 600) -> str:
    return run(
        "kubectl",
        "--context",
        target.context,
        "--namespace",
        target.namespace,
        *args,
        stdin=stdin,
        timeout=timeout,
    )


def get_json(target: Target, *args: str) -> dict[str, Any]:
    found: dict[str, Any] = json.loads(kubectl(target, "get", *args, "--output", "json"))
    return found


def missing_tools() -> list[str]:
    return [tool for tool in ("docker", "kind", "kubectl") if shutil.which(tool) is None]


def docker_engine_answers() -> bool:
    if shutil.which("docker") is None:
        return False
    return subprocess.run(["docker", "info"], capture_output=True, timeout=30).returncode == 0


def ensure_cluster(target: Target) -> None:
    clusters = run("kind", "get", "clusters").split()
    if target.cluster not in clusters:
        run("kind", "create", "cluster", "--name", target.cluster, "--wait", "180s", timeout=900)


def ensure_namespace(target: Target) -> None:
    manifest = run(
        "kubectl", "create", "namespace", target.namespace, "--dry-run=client", "--output=yaml"
    )
    run("kubectl", "--context", target.context, "apply", "-f", "-", stdin=manifest)
    # Every pod in it, the chart's and the operator's, must pass the restricted profile.
    run(
        "kubectl",
        "--context",
        target.context,
        "label",
        "--overwrite",
        "namespace",
        target.namespace,
        "pod-security.kubernetes.io/enforce=restricted",
    )


def load_images(target: Target, *images: str) -> None:
    for image in images or (target.image, target.operator_image):
        run("kind", "load", "docker-image", image, "--name", target.cluster, timeout=900)


def ensure_secret(target: Target, name: str, key: str, make_value: Callable[[], str]) -> str:
    """The Secret's value; made once, so a second deploy keeps passwords and keys stable."""
    try:
        found = get_json(target, "secret", name)
    except RuntimeError:
        value = make_value()
        kubectl(target, "create", "secret", "generic", name, f"--from-literal={key}={value}")
        return value
    return base64.b64decode(found["data"][key]).decode()


def deploy_postgres(target: Target) -> str:
    """Starts the throwaway PostgreSQL and returns the service's database URL."""
    password = ensure_secret(target, POSTGRES_SECRET, "password", lambda: secrets.token_hex(16))
    kubectl(target, "apply", "-f", str(POSTGRES_MANIFEST))
    kubectl(target, "rollout", "status", "deployment/postgres", "--timeout=300s")
    return (
        f"postgresql+asyncpg://chatservice:{password}@postgres.{target.namespace}.svc:5432"
        "/chatservice"
    )


def chart_values(target: Target) -> dict[str, Any]:
    return {
        "operator": {
            "image": {"repository": target.operator_repository, "tag": target.tag},
        },
        "chatService": {
            "image": {"repository": target.image_repository, "tag": target.tag},
            # Two pods on one kind node: enough to see a rolling update and a PDB.
            "replicas": 2,
        },
        "database": {"existingSecret": target.database_secret},
        "auth": {"existingSecret": target.admin_secret},
    }


def helm_upgrade_install(target: Target, values: dict[str, Any]) -> None:
    """`helm upgrade --install`, plus the one upgrade a first install needs for its ChatService.

    On a cluster without the CRD the chart installs the CRD and the operator only (Helm cannot
    create a resource in the same step as its first CRD); the upgrade then adds the ChatService.
    """
    import helm_python

    options: dict[str, Any] = {"namespace": target.namespace, "wait": "watcher", "timeout": 600}
    with helm_python.Config(kube_context=target.context, namespace=target.namespace) as config:
        try:
            config.status(target.release)
        except helm_python.HelmError:
            config.install(str(CHART_DIR), target.release, values, **options)
        else:
            config.upgrade(str(CHART_DIR), target.release, values, **options)
        if values.get("chatService", {}).get("create", True) and not chatservice_exists(target):
            config.upgrade(str(CHART_DIR), target.release, values, **options)


def chatservice_exists(target: Target) -> bool:
    try:
        get_json(target, "chatservice", chatservice_name(target))
    except RuntimeError:
        return False
    return True


@contextlib.contextmanager
def port_forward(target: Target, resource: str, remote_port: int) -> Iterator[str]:
    """`kubectl port-forward` to a Service; yields the local base URL."""
    local = free_port()
    scope = ["--context", target.context, "--namespace", target.namespace]
    process = subprocess.Popen(
        ["kubectl", *scope, "port-forward", resource, f"{local}:{remote_port}"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", local), 1):
                break
            time.sleep(0.2)
        else:
            raise TimeoutError(f"port-forward to {resource} did not open")
        yield f"http://127.0.0.1:{local}"
    finally:
        process.terminate()
        process.wait(timeout=10)


def chatservice_name(target: Target) -> str:
    """The chart's full name (templates/_helpers.tpl), which names the ChatService."""
    return target.release if "chatservice" in target.release else f"{target.release}-chatservice"


def operator_metrics_service(target: Target) -> str:
    return f"{chatservice_name(target)}-operator-metrics"


def wait_ready(target: Target, timeout_seconds: int = 600) -> None:
    kubectl(
        target,
        "wait",
        f"chatservice/{chatservice_name(target)}",
        "--for=condition=Ready",
        f"--timeout={timeout_seconds}s",
        timeout=timeout_seconds + 30,
    )


def admin_key(target: Target) -> str:
    return ensure_secret(target, target.admin_secret, "key", lambda: secrets.token_hex(32))


def deploy(target: Target) -> None:
    ensure_namespace(target)
    load_images(target)
    database_url = deploy_postgres(target)
    ensure_secret(target, target.database_secret, "url", lambda: database_url)
    admin_key(target)
    helm_upgrade_install(target, chart_values(target))
    wait_ready(target)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=["deploy"])
    parser.add_argument("--cluster", default=Target.cluster)
    parser.add_argument("--namespace", default=Target.namespace)
    parser.add_argument("--release", default=Target.release)
    parser.add_argument("--image-repository", default=Target.image_repository)
    parser.add_argument("--operator-repository", default=Target.operator_repository)
    parser.add_argument("--tag", default=Target.tag)
    args = parser.parse_args()
    target = Target(
        cluster=args.cluster,
        namespace=args.namespace,
        release=args.release,
        image_repository=args.image_repository,
        operator_repository=args.operator_repository,
        tag=args.tag,
    )
    deploy(target)
    print(f"ChatService {chatservice_name(target)} is Ready in {target.context}/{target.namespace}")


if __name__ == "__main__":
    main()
