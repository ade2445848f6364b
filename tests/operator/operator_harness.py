"""The real Kopf runtime, in-process, against kmock's Kubernetes emulation.

The tests play the cluster's controllers (Job, Deployment) by patching `status` over HTTP, so
every change reaches the operator as a watch event, as it would from a real API server.
"""

from __future__ import annotations

import asyncio
import functools
import json
import os
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import kmock
import pytest
import yaml

from tests.apiserver.emulator import OPERATOR_TOKEN as OPERATOR_TOKEN  # for the benchmarks
from tests.apiserver.emulator import ApiServerEmulator, Grant
from tests.chart.rendering import render_values

# The drift pass is slow in production; here it is short, so that every flow also runs with
# its extra reconciliations interleaved (they must change nothing). Set before import.
os.environ.setdefault("CHATSERVICE_OPERATOR_DRIFT_SECONDS", "2")
# A running canary is read and judged this often (10 s in production).
os.environ.setdefault("CHATSERVICE_OPERATOR_CANARY_SECONDS", "0.25")

import kopf

import chatservice_operator.handlers  # noqa: F401  (registers the handlers)

CHATSERVICES = "chatservice.dev/v1alpha1/chatservices"
JOBS = "batch/v1/jobs"
DEPLOYMENTS = "apps/v1/deployments"
NS = "ns"
CRD_PATH = Path(__file__).resolve().parents[2] / "k8s" / "base" / "crd.yaml"

RESOURCES = {
    CHATSERVICES: ("ChatService", True),
    JOBS: ("Job", True),
    DEPLOYMENTS: ("Deployment", True),
    "v1/configmaps": ("ConfigMap", True),
    "v1/pods": ("Pod", True),
    "v1/services": ("Service", True),
    "v1/events": ("Event", True),
    "v1/namespaces": ("Namespace", False),
    "autoscaling/v2/horizontalpodautoscalers": ("HorizontalPodAutoscaler", True),
    "policy/v1/poddisruptionbudgets": ("PodDisruptionBudget", True),
    "apiextensions.k8s.io/v1/customresourcedefinitions": ("CustomResourceDefinition", False),
}
SERVICE_MONITORS = "monitoring.coreos.com/v1/servicemonitors"


@functools.cache
def chart_grant(*, cluster_wide: bool) -> Grant:
    """The operator's RBAC as the chart renders it (the one source the manifests share)."""
    rendered = render_values({"operator": {"clusterWide": cluster_wide}}).without_hooks()
    role = rendered.one("ClusterRole" if cluster_wide else "Role")
    return Grant(tuple(role["rules"]), None if cluster_wide else frozenset({NS}))


@functools.cache
def crd() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(CRD_PATH.read_text())
    return loaded


def now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class Cluster:
    """Reads kmock's store; writes over HTTP (so that watchers see events)."""

    def __init__(self, emulator: ApiServerEmulator, session: aiohttp.ClientSession) -> None:
        self.emulator = emulator
        self.session = session

    def _url(self, resource: str, name: str | None = None, sub: str | None = None) -> str:
        group_version, plural = resource.rsplit("/", 1)
        root = "api" if group_version == "v1" else "apis"
        url = f"{self.emulator.url}/{root}/{group_version}/namespaces/{NS}/{plural}"
        return url + (f"/{name}" if name else "") + (f"/{sub}" if sub else "")

    def get(self, resource: str, name: str) -> dict[str, Any] | None:
        key = (kmock.resource(resource), NS, name)
        if key not in self.emulator.objects or self.emulator.objects[key].deleted:
            return None
        raw: dict[str, Any] = self.emulator.objects[key].raw
        return raw

    def names(self, resource: str) -> list[str]:
        return sorted(
            name
            for (res, _, name), obj in self.emulator.objects.items()
            if res == kmock.resource(resource) and not obj.deleted
        )

    async def create(self, resource: str, body: dict[str, Any]) -> None:
        async with self.session.post(self._url(resource), json=body) as response:
            assert response.status < 300, await response.text()

    async def patch(
        self, resource: str, name: str, patch: dict[str, Any], sub: str | None = None
    ) -> None:
        headers = {"Content-Type": "application/merge-patch+json"}
        url = self._url(resource, name, sub)
        async with self.session.patch(url, json=patch, headers=headers) as response:
            assert response.status < 300, await response.text()

    async def delete(self, resource: str, name: str) -> None:
        async with self.session.delete(self._url(resource, name)) as response:
            assert response.status < 300, await response.text()

    def requests(self, method: str, path_part: str = "") -> list[Any]:
        return [r for r in self.emulator if r.method == method.upper() and path_part in r.url.path]

    def first(self, method: str, path_part: str, mentioning: str) -> int | None:
        """The position in the request log of the first such request whose body mentions text."""
        for position, request in enumerate(self.emulator):
            if request.method == method.upper() and path_part in request.url.path:
                if mentioning in json.dumps(request.data):
                    return position
        return None

    def events(self, reason: str | None = None) -> list[dict[str, Any]]:
        posted = [r.data for r in self.requests("POST", "/events")]
        return [e for e in posted if reason is None or e.get("reason") == reason]

    # --- the controllers the tests play -------------------------------------------------
    async def complete_job(self, name: str) -> None:
        condition = {"type": "Complete", "status": "True", "lastTransitionTime": now()}
        status = {"succeeded": 1, "completionTime": now(), "conditions": [condition]}
        await self.patch(JOBS, name, {"status": status}, "status")

    async def fail_job(self, name: str) -> None:
        condition = {
            "type": "Failed",
            "status": "True",
            "reason": "BackoffLimitExceeded",
            "message": "Job has reached the specified backoff limit",
            "lastTransitionTime": now(),
        }
        await self.patch(JOBS, name, {"status": {"failed": 3, "conditions": [condition]}}, "status")

    async def roll_out(self, name: str) -> None:
        deployment = self.get(DEPLOYMENTS, name)
        assert deployment is not None
        replicas = deployment["spec"].get("replicas", 1)
        status = {
            "observedGeneration": deployment["metadata"]["generation"],
            "replicas": replicas,
            "updatedReplicas": replicas,
            "readyReplicas": replicas,
            "availableReplicas": replicas,
            "conditions": [
                {"type": "Progressing", "status": "True", "reason": "NewReplicaSetAvailable"}
            ],
        }
        await self.patch(DEPLOYMENTS, name, {"status": status}, "status")

    async def miss_deadline(self, name: str) -> None:
        deployment = self.get(DEPLOYMENTS, name)
        assert deployment is not None
        status = {
            "observedGeneration": deployment["metadata"]["generation"],
            "updatedReplicas": 1,
            "conditions": [
                {"type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded"}
            ],
        }
        await self.patch(DEPLOYMENTS, name, {"status": status}, "status")


async def eventually(
    check: Callable[[], Any], message: str = "condition", within: float = 10
) -> Any:
    """Wait (10 s unless told) for the operator to reach a state."""
    try:
        async with asyncio.timeout(within):
            # Polling: kmock's object store has no change notification to wait on.
            while not (result := check()):  # noqa: ASYNC110
                await asyncio.sleep(0.05)
    except TimeoutError:
        pytest.fail(f"timed out waiting for {message}")
    return result


class Operator:
    """Starts and stops the real Kopf runtime with this package's handlers.

    It runs in a thread with its own event loop, as in a real process: on exit Kopf cancels
    every task started after it, which in the test's loop would include pytest's teardown.
    """

    def __init__(self, namespaces: list[str] | None = None) -> None:
        # None: cluster-wide, as `--all-namespaces`; else the namespaces, as `--namespace`.
        self.namespaces = namespaces
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self.error: BaseException | None = None

    def _run(self, ready: threading.Event) -> None:
        try:
            asyncio.run(
                kopf.operator(
                    clusterwide=self.namespaces is None,
                    namespaces=self.namespaces or [],
                    settings=kopf.OperatorSettings(),
                    stop_flag=self._stop,
                    ready_flag=ready,
                )
            )
        except BaseException as exc:  # reported by stop(), in the test
            self.error = exc

    async def start(self) -> None:
        self._stop = threading.Event()
        ready = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(ready,), daemon=True)
        self._thread.start()
        assert await asyncio.to_thread(ready.wait, 10), "the operator did not start"

    async def stop(self) -> None:
        if self._thread is not None:
            self._stop.set()
            await asyncio.to_thread(self._thread.join, 15)
            assert not self._thread.is_alive(), "the operator did not stop"
            self._thread = None
        assert self.error is None, f"the operator crashed: {self.error!r}"


def declare(emulator: ApiServerEmulator, *, service_monitors: bool) -> None:
    resources = dict(RESOURCES)
    if service_monitors:
        resources[SERVICE_MONITORS] = ("ServiceMonitor", True)
    for resource, (kind, namespaced) in resources.items():
        emulator.resources[resource] = kmock.ResourceInfo(
            kind=kind,
            namespaced=namespaced,
            subresources={"status"},
            verbs={"get", "list", "watch", "create", "patch", "delete"},
        )
