"""Log in from a kubeconfig, including users whose credentials come from an exec plugin (EKS,
GKE, AKS): Kopf's own kubeconfig login reads static tokens and certificates only."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
from datetime import datetime
from pathlib import Path
from typing import Any

import kopf
import yaml

EXEC_TIMEOUT = 60  # a plugin may open a browser for an interactive login; still bounded


def _kubeconfig_paths() -> list[Path]:
    configured = os.environ.get("KUBECONFIG", "")
    if configured:
        return [Path(p).expanduser() for p in configured.split(os.pathsep) if p.strip()]
    default = Path("~/.kube/config").expanduser()
    return [default] if default.exists() else []


def _current_user() -> tuple[dict[str, Any], dict[str, Any]]:
    """The current context's user and cluster entries (the first file that names one wins)."""
    current: str | None = None
    named: dict[str, dict[str, Any]] = {"contexts": {}, "clusters": {}, "users": {}}
    for path in _kubeconfig_paths():
        config = yaml.safe_load(path.read_text()) or {}
        current = current or config.get("current-context")
        for section, entries in named.items():
            for item in config.get(section) or []:
                key = section[:-1]  # "contexts" -> "context"
                entries.setdefault(item["name"], item.get(key) or {})
    if current is None or current not in named["contexts"]:
        return {}, {}
    context = named["contexts"][current]
    return named["users"].get(context.get("user"), {}), named["clusters"].get(
        context.get("cluster"), {}
    )


def run_exec_plugin(spec: dict[str, Any], cluster: dict[str, Any]) -> dict[str, Any]:
    """Run a client.authentication.k8s.io exec plugin and return its ExecCredential status."""
    api_version = spec.get("apiVersion", "client.authentication.k8s.io/v1")
    info: dict[str, Any] = {"apiVersion": api_version, "kind": "ExecCredential", "spec": {}}
    if spec.get("provideClusterInfo"):
        info["spec"]["cluster"] = {
            "server": cluster.get("server"),
            "certificate-authority-data": cluster.get("certificate-authority-data"),
            "config": cluster.get("extensions", {}),
        }
    info["spec"]["interactive"] = False
    env = {**os.environ, "KUBERNETES_EXEC_INFO": json.dumps(info)}
    env.update({item["name"]: item["value"] for item in spec.get("env") or []})
    try:
        result = subprocess.run(  # noqa: S603  (the command is the user's own kubeconfig's)
            [spec["command"], *(spec.get("args") or [])],
            env=env,
            capture_output=True,
            text=True,
            timeout=EXEC_TIMEOUT,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise kopf.LoginError(f"exec plugin {spec['command']!r} did not run: {exc}") from exc
    if result.returncode != 0:
        # The plugin's stderr explains a failed cloud login; it holds no credential.
        raise kopf.LoginError(
            f"exec plugin {spec['command']!r} exited {result.returncode}: {result.stderr.strip()}"
        )
    try:
        status: dict[str, Any] = json.loads(result.stdout)["status"]
    except (ValueError, KeyError, TypeError) as exc:
        raise kopf.LoginError(f"exec plugin {spec['command']!r} printed no ExecCredential") from exc
    return status


def login_with_exec_plugin(settings: kopf.OperatorSettings) -> kopf.ConnectionInfo | None:
    """The kubeconfig's connection with the exec plugin's credentials; None without a plugin."""
    user, cluster = _current_user()
    if "exec" not in user:
        return None
    info = kopf.login_with_kubeconfig(settings=settings)
    if info is None:
        return None
    status = run_exec_plugin(user["exec"], cluster)
    expiration = status.get("expirationTimestamp")
    return dataclasses.replace(
        info,
        token=status.get("token") or info.token,
        certificate_data=status.get("clientCertificateData") or info.certificate_data,
        private_key_data=status.get("clientKeyData") or info.private_key_data,
        # Kopf logs in again when this passes, and so does our client (api.KubeClient).
        expiration=datetime.fromisoformat(expiration.replace("Z", "+00:00"))
        if expiration
        else None,
    )
