"""The real Kopf runtime, in-process, against kmock's Kubernetes emulation.

The tests play the cluster's controllers (Job, Deployment) by patching `status` over HTTP, so
every change reaches the operator as a watch event, as it would from a real API server.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import threading
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import aiohttp
import jsonpatch
import kmock
import pytest

# The drift pass is slow in production; here it is short, so that every flow also runs with
# its extra reconciliations interleaved (they must change nothing). Set before import.
os.environ.setdefault("CHATSERVICE_OPERATOR_DRIFT_SECONDS", "2")

import kopf

import chatservice_operator.handlers  # noqa: F401  (registers the handlers)
from chatservice_operator.api import contains
from chatservice_operator.rbac import RULES

CHATSERVICES = "chatservice.dev/v1alpha1/chatservices"
JOBS = "batch/v1/jobs"
DEPLOYMENTS = "apps/v1/deployments"
NS = "ns"

RESOURCES = {
    CHATSERVICES: ("ChatService", True),
    JOBS: ("Job", True),
    DEPLOYMENTS: ("Deployment", True),
    "v1/configmaps": ("ConfigMap", True),
    "v1/services": ("Service", True),
    "v1/events": ("Event", True),
    "v1/namespaces": ("Namespace", False),
    "autoscaling/v2/horizontalpodautoscalers": ("HorizontalPodAutoscaler", True),
    "policy/v1/poddisruptionbudgets": ("PodDisruptionBudget", True),
    "apiextensions.k8s.io/v1/customresourcedefinitions": ("CustomResourceDefinition", False),
}
SERVICE_MONITORS = "monitoring.coreos.com/v1/servicemonitors"


class ClusterEmulator(kmock.KubernetesEmulator):  # type: ignore[misc]
    """kmock plus the API-server behaviour the operator relies on and kmock 0.8 lacks:
    uid, resourceVersion (Kopf's JSON patches test it), metadata.generation bumped on spec
    changes, and generateName (Kopf's events)."""

    _counter = itertools.count(1)

    async def _handle(self, request: Any) -> Any:
        if request.resource is not None and request.action == kmock.action.CREATE:
            meta = request.data.setdefault("metadata", {})
            meta.update(uid=str(uuid.uuid4()), resourceVersion=str(next(self._counter)))
            meta.setdefault("generation", 1)
            if "name" not in meta and "generateName" in meta:
                meta["name"] = f"{meta['generateName']}{next(self._counter)}"
        elif request.resource is not None and request.action == kmock.action.UPDATE:
            self._track_versions(request)
        return await super()._handle(request)

    async def _render_error(self, exc: Exception) -> Any:
        # A failed resourceVersion test is a 422 from a real API server (kmock says 500), and
        # Kopf relies on that status to retry its patch on the next cycle instead of failing.
        if isinstance(exc, jsonpatch.JsonPatchTestFailed):
            exc = kmock.KubernetesError(status=422, reason="Invalid", message=str(exc))
        return await super()._render_error(exc)

    def _track_versions(self, request: Any) -> None:
        key = (request.resource, request.namespace, request.name)
        if key not in self.objects or self.objects[key].deleted:
            return
        current = self.objects[key].raw
        version = str(next(self._counter))
        data = request.data
        if isinstance(data, list):  # a JSON patch (Kopf's): its test op sees the old version
            data.append({"op": "add", "path": "/metadata/resourceVersion", "value": version})
            return
        meta = data.setdefault("metadata", {})
        meta["resourceVersion"] = version
        spec_changed = "spec" in data and not contains(current.get("spec", {}), data["spec"])
        if request.subresource is None and spec_changed:
            meta["generation"] = current["metadata"].get("generation", 1) + 1


def now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class Cluster:
    """Reads kmock's store; writes over HTTP (so that watchers see events)."""

    def __init__(self, emulator: ClusterEmulator, session: aiohttp.ClientSession) -> None:
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

    def unpermitted_requests(self) -> list[str]:
        """The operator's API requests (its own and Kopf's) that its RBAC rules do not grant."""
        verbs = {
            kmock.action.FETCH: "get",
            kmock.action.LIST: "list",
            kmock.action.WATCH: "watch",
            kmock.action.CREATE: "create",
            kmock.action.UPDATE: "patch",
            kmock.action.DELETE: "delete",
        }
        denied = []
        for request in self.emulator:
            agent = request.headers.get("User-Agent", "")
            ours = agent == "chatservice-operator" or agent.startswith("kopf/")
            discovery = request.resource is None or request.resource.plural is None
            if not ours or discovery or request.action not in verbs:
                continue  # the test's own requests, or API discovery (granted to everyone)
            resource = request.resource.plural
            if request.subresource:
                resource = f"{resource}/{request.subresource}"
            verb = verbs[request.action]
            if not any(
                request.resource.group in rule["apiGroups"]
                and resource in rule["resources"]
                and verb in rule["verbs"]
                for rule in RULES
            ):
                denied.append(f"{verb} {request.resource.group}/{resource}")
        return denied

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


async def eventually(check: Callable[[], Any], message: str = "condition") -> Any:
    """Wait (10 s at most) for the operator to reach a state."""
    try:
        async with asyncio.timeout(10):
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

    def __init__(self) -> None:
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self.error: BaseException | None = None

    def _run(self, ready: threading.Event) -> None:
        try:
            asyncio.run(
                kopf.operator(
                    clusterwide=True,  # kmock 0.8 cannot list namespaces
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


def declare(emulator: ClusterEmulator, *, service_monitors: bool) -> None:
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
