"""Every pod the chart creates meets the restricted Pod Security Standard (the profile a
namespace labelled `pod-security.kubernetes.io/enforce: restricted` admits) and runs with a
read-only root filesystem as the image's fixed non-root user."""

from __future__ import annotations

from typing import Any

from .rendering import Rendered

IMAGE_UID = 10001  # Dockerfile: useradd --uid 10001; test_dockerfile checks the image side.
# Volume types the restricted profile allows.
ALLOWED_VOLUMES = {
    "configMap",
    "csi",
    "downwardAPI",
    "emptyDir",
    "ephemeral",
    "persistentVolumeClaim",
    "projected",
    "secret",
}


def restricted_violations(pod: dict[str, Any]) -> list[str]:
    """The restricted profile's rules (Kubernetes "Pod Security Standards", v1.35)."""
    found = []
    pod_context = pod.get("securityContext", {})
    for flag in ("hostNetwork", "hostPID", "hostIPC"):
        if pod.get(flag):
            found.append(flag)
    for volume in pod.get("volumes", []):
        kinds = set(volume) - {"name"}
        if not kinds <= ALLOWED_VOLUMES:
            found.append(f"volume {volume['name']}: {kinds}")
    if pod_context.get("seccompProfile", {}).get("type") not in {"RuntimeDefault", "Localhost"}:
        found.append("pod seccompProfile")
    for container in pod.get("initContainers", []) + pod["containers"]:
        ctx = container.get("securityContext", {})
        where = f"container {container['name']}"
        if ctx.get("privileged"):
            found.append(f"{where}: privileged")
        if ctx.get("allowPrivilegeEscalation") is not False:
            found.append(f"{where}: allowPrivilegeEscalation must be false")
        if ctx.get("capabilities", {}).get("drop") != ["ALL"]:
            found.append(f"{where}: capabilities must drop ALL")
        if set(ctx.get("capabilities", {}).get("add", [])) - {"NET_BIND_SERVICE"}:
            found.append(f"{where}: adds capabilities")
        if not (ctx.get("runAsNonRoot") or pod_context.get("runAsNonRoot")):
            found.append(f"{where}: runAsNonRoot")
        if ctx.get("runAsUser", pod_context.get("runAsUser")) == 0:
            found.append(f"{where}: runs as root")
        if any(port.get("hostPort") for port in container.get("ports", [])):
            found.append(f"{where}: hostPort")
    return found


def test_every_pod_meets_the_restricted_profile(rendered: Rendered) -> None:
    pods = list(rendered.pod_specs())
    assert pods
    for owner, pod in pods:
        assert restricted_violations(pod) == [], f"{owner['kind']}/{owner['metadata']['name']}"


def test_every_container_has_a_read_only_root_and_the_image_user(rendered: Rendered) -> None:
    for owner, pod in rendered.pod_specs():
        assert pod["securityContext"]["runAsUser"] == IMAGE_UID
        for container in pod["containers"]:
            ctx = container["securityContext"]
            assert ctx["readOnlyRootFilesystem"] is True, owner["metadata"]["name"]
            assert ctx["runAsUser"] == IMAGE_UID


def test_the_checker_catches_a_pod_that_breaks_the_profile() -> None:
    # A plain pod spec, as `kubectl run` writes it: nothing restricted about it.
    pod = {"containers": [{"name": "app", "image": "busybox"}], "hostNetwork": True}
    assert len(restricted_violations(pod)) >= 5
