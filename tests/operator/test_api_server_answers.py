"""The operator against the answers of a real API server that kmock alone does not give:
text/plain 404s, 403 for what its RBAC does not grant, 429 with Retry-After, server-side apply,
an API group that appears later, exec-plugin logins."""

from __future__ import annotations

import asyncio
import copy
import sys
import time
from pathlib import Path
from typing import Any

import kmock
import kopf
import pytest
import yaml

from chatservice_operator.handlers import connection_info
from chatservice_operator.kube import FIELD_MANAGER, ApiError, KubeClient
from tests.apiserver.emulator import OPERATOR_TOKEN
from tests.operator.flow_steps import install
from tests.operator.operator_harness import (
    CHATSERVICES,
    JOBS,
    NS,
    SERVICE_MONITORS,
    Cluster,
    Operator,
    crd,
    eventually,
)
from tests.operator.operator_specs import OLD, body, job_for


def client() -> KubeClient:
    return KubeClient(lambda: connection_info(kopf.OperatorSettings()))


@pytest.mark.parametrize("service_monitors", [False])
async def test_an_unknown_api_group_is_absent_not_an_error(cluster: Cluster) -> None:
    async with cluster.session.get(f"{cluster.emulator.url}/apis/monitoring.coreos.com") as raw:
        assert (raw.status, raw.content_type) == (404, "text/plain")
        assert await raw.text() == "404 page not found\n"
    api = client()
    try:
        # A real server answers `text/plain` "404 page not found" here, not a JSON Status.
        assert await api.has_api_group("monitoring.coreos.com") is False
        assert await api.has_api_group("chatservice.dev") is True
    finally:
        await api.close()


@pytest.mark.parametrize("service_monitors", [False])
async def test_a_text_plain_error_becomes_an_api_error_with_its_text(cluster: Cluster) -> None:
    api = client()
    try:
        # Granted by the Role, but not served: RBAC passes and the server's mux answers 404.
        obj: dict[str, Any] = {"apiVersion": "monitoring.coreos.com/v1", "kind": "ServiceMonitor"}
        obj["metadata"] = {"name": "x", "namespace": NS}
        with pytest.raises(ApiError, match="HTTP 404: 404 page not found"):
            await api.create(obj)
    finally:
        await api.close()


async def test_a_429_carries_the_servers_retry_after(cluster: Cluster) -> None:
    api = client()
    cluster.emulator.throttle = 1
    try:
        with pytest.raises(ApiError) as raised:
            await api.get("chatservice.dev/v1alpha1", "ChatService", NS, "chat")
        assert (raised.value.status, raised.value.retry_after) == (429, 1.0)
        assert await api.get("chatservice.dev/v1alpha1", "ChatService", NS, "chat") is None
    finally:
        await api.close()


@pytest.mark.parametrize("operator_namespaces", [[NS]])
async def test_namespaced_operator_with_only_its_role_reconciles_within_seconds(
    cluster: Cluster, operator_namespaces: list[str]
) -> None:
    await cluster.create(CHATSERVICES, body(image=OLD))
    runner = Operator(operator_namespaces)
    started = time.monotonic()
    await runner.start()
    try:
        await eventually(lambda: cluster.get(JOBS, job_for(OLD)), message="the first Job")
        elapsed = time.monotonic() - started
    finally:
        await runner.stop()
    print(f"namespaced start to first reconcile: {elapsed:.2f} s")
    assert elapsed < 5
    # Kopf asked for nothing cluster-scoped (no namespace list, no CRD watch).
    assert cluster.emulator.forbidden == []
    assert not cluster.requests("GET", "/api/v1/namespaces/") or all(
        r.namespace == NS for r in cluster.emulator if r.url.path.startswith("/api/v1/namespaces")
    )


async def test_the_emulation_forbids_what_the_role_does_not_grant(cluster: Cluster) -> None:
    headers = {"Authorization": f"Bearer {OPERATOR_TOKEN}"}
    url = f"{cluster.emulator.url}/api/v1/namespaces/{NS}/secrets"
    async with cluster.session.get(url, headers=headers) as response:
        assert response.status == 403
        status = await response.json()
    assert (status["kind"], status["reason"]) == ("Status", "Forbidden")
    assert 'cannot list resource "secrets"' in status["message"]


@pytest.mark.parametrize("service_monitors", [False])
@pytest.mark.usefixtures("operator")
async def test_a_prometheus_operator_installed_later_is_noticed(cluster: Cluster) -> None:
    await install(cluster)
    assert cluster.names(SERVICE_MONITORS) == []
    cluster.emulator.resources[SERVICE_MONITORS] = kmock.ResourceInfo(
        kind="ServiceMonitor",
        namespaced=True,
        verbs={"get", "list", "watch", "create", "patch", "delete"},
    )
    # The drift pass (2 s in the tests) asks for the monitoring API again.
    await eventually(lambda: cluster.names(SERVICE_MONITORS) == ["chat"], "a ServiceMonitor")


@pytest.mark.usefixtures("operator")
async def test_children_are_server_side_applied_and_a_deleted_field_comes_back(
    cluster: Cluster,
) -> None:
    await install(cluster)
    service = cluster.get("v1/services", "chat")
    assert service is not None
    applies = [
        r
        for r in cluster.requests("PATCH", "/services/chat")
        if r.headers.get("Content-Type") == "application/apply-patch+yaml"
    ]
    assert applies, "the Service is written by server-side apply"
    assert {(r.params["fieldManager"], r.params["force"]) for r in applies} == {
        (FIELD_MANAGER, "true")
    }
    # A user deletes a field the operator manages and adds one of their own.
    label = "app.kubernetes.io/managed-by"
    await cluster.patch("v1/services", "chat", {"metadata": {"labels": {label: None, "team": "x"}}})

    def restored() -> dict[str, str]:
        labels: dict[str, str] = (cluster.get("v1/services", "chat") or {})["metadata"]["labels"]
        return labels

    await eventually(lambda: label in restored(), message="the deleted label back")
    assert restored()["team"] == "x", "a field the operator does not manage is left alone"


def write_exec_kubeconfig(path: Path, server: str, token: str) -> None:
    plugin = path.parent / "plugin.py"
    plugin.write_text(
        "import json, os\n"
        "assert json.loads(os.environ['KUBERNETES_EXEC_INFO'])['kind'] == 'ExecCredential'\n"
        "print(json.dumps({'apiVersion': 'client.authentication.k8s.io/v1',"
        " 'kind': 'ExecCredential', 'status': {'token': os.environ['PLUGIN_TOKEN'],"
        " 'expirationTimestamp': '2999-01-01T00:00:00Z'}}))\n"
    )
    exec_spec = {
        "apiVersion": "client.authentication.k8s.io/v1",
        "command": sys.executable,
        "args": [str(plugin)],
        "env": [{"name": "PLUGIN_TOKEN", "value": token}],
    }
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "current-context": "eks",
        "contexts": [{"name": "eks", "context": {"cluster": "eks", "user": "eks"}}],
        "clusters": [{"name": "eks", "cluster": {"server": server}}],
        "users": [{"name": "eks", "user": {"exec": exec_spec}}],
    }
    path.write_text(yaml.safe_dump(config))


@pytest.mark.parametrize(("token", "status"), [(OPERATOR_TOKEN, None), ("wrong", 401)])
async def test_an_exec_plugin_kubeconfig_logs_in(
    cluster: Cluster,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    token: str,
    status: int | None,
) -> None:
    kubeconfig = tmp_path / "exec-kubeconfig"
    write_exec_kubeconfig(kubeconfig, str(cluster.emulator.url), token)
    monkeypatch.setenv("KUBECONFIG", str(kubeconfig))
    info = connection_info(kopf.OperatorSettings())
    assert info.token == token
    assert info.expiration is not None
    api = client()
    try:
        if status is None:
            assert await api.get("chatservice.dev/v1alpha1", "ChatService", NS, "chat") is None
        else:
            with pytest.raises(ApiError, match=f"HTTP {status}"):
                await api.get("chatservice.dev/v1alpha1", "ChatService", NS, "chat")
    finally:
        await api.close()


async def test_creating_the_crd_checks_its_defaults(cluster: Cluster) -> None:
    url = f"{cluster.emulator.url}/apis/apiextensions.k8s.io/v1/customresourcedefinitions"
    async with cluster.session.post(url, json=crd()) as response:
        assert response.status < 300  # kmock answers 200 where a real server says 201
    broken = copy.deepcopy(crd())
    broken["metadata"]["name"] = "broken.chatservice.dev"
    spec = broken["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
    rules = spec["properties"]["autoscaling"]["x-kubernetes-validations"]
    rules[0]["rule"] = "self.minReplicas <= self.maxReplicas"  # without the has() guards
    async with cluster.session.post(url, json=broken) as response:
        assert response.status == 422
        assert (
            "properties[autoscaling].default: Invalid value" in (await response.json())["message"]
        )


async def test_the_operator_exits_when_the_chatservice_api_is_not_served(cluster: Cluster) -> None:
    # Without scanning, Kopf would never notice the CRD arriving: exit, to be restarted.
    del cluster.emulator.resources[CHATSERVICES]

    def run() -> None:
        asyncio.run(kopf.operator(clusterwide=True, settings=kopf.OperatorSettings()))

    started = time.monotonic()
    # Kopf's ActivityError is not public; its cause is our PermanentError.
    with pytest.raises(Exception, match="One or more handlers failed") as raised:
        await asyncio.wait_for(asyncio.to_thread(run), timeout=15)
    assert "is not served: is the CRD installed?" in str(raised.value.__cause__)
    assert time.monotonic() - started < 5
