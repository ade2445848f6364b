"""kmock's Kubernetes emulation made to answer as a real kube-apiserver does where the operator
and the chart depend on it (kmock 0.8 answers otherwise):

- uid, resourceVersion, metadata.generation (bumped on spec changes) and generateName;
- `text/plain` "404 page not found" for an unknown API group, version or resource;
- 403 with a Forbidden Status for every request of the operator's token that its RBAC rules
  (from the rendered Role or ClusterRole) do not grant; discovery is open, as system:discovery;
- CRDs refused when their defaults break their schema or CEL rules; ChatServices defaulted,
  pruned and validated (schema and CEL) on create, 422 Invalid otherwise;
- server-side apply (`application/apply-patch+yaml`) with field managers: a field the manager
  applied before and no longer applies is removed, a field it applies is set (and restored if
  someone deleted it), fields of other managers are kept;
- `labelSelector` on lists (equality, inequality and existence terms), which kmock ignores;
- 429 with Retry-After on request (`throttle`), as priority-and-fairness answers;
- 401 for a bearer token other than the operator's. Requests without credentials are the
  test's own, as cluster-admin.
"""

from __future__ import annotations

import copy
import itertools
import json
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import aiohttp.web
import jsonpatch
import kmock

from tests.apiserver import crd_validation
from tests.versions import KUBERNETES_VERSION

OPERATOR_TOKEN = "operator-token"
APPLY_PATCH = "application/apply-patch+yaml"
VERBS = {
    kmock.action.FETCH: "get",
    kmock.action.LIST: "list",
    kmock.action.WATCH: "watch",
    kmock.action.CREATE: "create",
    kmock.action.DELETE: "delete",
}


@dataclass(frozen=True)
class Grant:
    """RBAC rules bound to the operator's token: in `namespaces`, or cluster-wide when None."""

    rules: tuple[Mapping[str, Any], ...]
    namespaces: frozenset[str] | None

    def allows(
        self, verb: str, group: str, resource: str, namespace: str | None, name: str | None
    ) -> bool:
        if self.namespaces is not None and namespace not in self.namespaces:
            return False
        return any(
            group in rule["apiGroups"]
            and resource in rule["resources"]
            and verb in rule["verbs"]
            and ("resourceNames" not in rule or name in rule["resourceNames"])
            for rule in self.rules
        )


def _status(code: int, reason: str, message: str, **extra: Any) -> aiohttp.web.Response:
    body = {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code,
    }
    return aiohttp.web.json_response(body, status=code, **extra)


def _page_not_found() -> aiohttp.web.Response:
    """What the real server's mux answers for a path that no API serves."""
    return aiohttp.web.Response(status=404, text="404 page not found\n")


def _leaves(value: Any, prefix: tuple[str, ...] = ()) -> set[tuple[str, ...]]:
    """Field paths of an applied configuration (lists are atomic here: a simplification)."""
    if isinstance(value, dict) and value:
        return set().union(*(_leaves(v, (*prefix, k)) for k, v in value.items()))
    return {prefix}


def _remove(obj: dict[str, Any], path: tuple[str, ...]) -> None:
    *parents, last = path
    for key in parents:
        child = obj.get(key)
        if not isinstance(child, dict):
            return
        obj = child
    obj.pop(last, None)


def _merge(target: dict[str, Any], applied: Mapping[str, Any]) -> None:
    for key, value in applied.items():
        if isinstance(value, dict) and isinstance(target.get(key), dict):
            _merge(target[key], value)
        else:
            target[key] = copy.deepcopy(value)


class ApiServerEmulator(kmock.KubernetesEmulator):
    _counter = itertools.count(1)

    def __init__(
        self,
        *args: Any,
        grant: Grant | None = None,
        crds: Iterable[dict[str, Any]] = (),
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self.grant = grant
        self.crds = {(c["spec"]["group"], c["spec"]["names"]["plural"]): c for c in crds}
        self.forbidden: list[str] = []
        self.throttle = 0  # how many of the operator's next requests get 429
        # (object key, field manager) -> the field paths it applied last.
        self._applied: dict[tuple[Any, str], set[tuple[str, ...]]] = {}

    async def _handle(self, request: Any) -> Any:
        authorization = request.headers.get("Authorization")
        if authorization is not None and authorization != f"Bearer {OPERATOR_TOKEN}":
            return _status(401, "Unauthorized", "Unauthorized")
        if authorization is not None:
            if self.throttle > 0:
                self.throttle -= 1
                return _status(
                    429,
                    "TooManyRequests",
                    "Too many requests, please try again later.",
                    headers={"Retry-After": "1"},
                )
            denied = self._denied(request)
            if denied is not None:
                self.forbidden.append(denied)
                return _status(403, "Forbidden", denied)
        if request.resource is not None and request.resource.plural is not None:
            declared = kmock.KubernetesScaffold._get_resources(self)
            if not any(resource == request.resource for resource in declared):
                return _page_not_found()  # kmock would store an object of any resource
            if request.action == kmock.action.CREATE:
                refused = self._admit(request)
                if refused is not None:
                    return refused
                meta = request.data.setdefault("metadata", {})
                meta.update(uid=str(uuid.uuid4()), resourceVersion=str(next(self._counter)))
                meta.setdefault("generation", 1)
                if "name" not in meta and "generateName" in meta:
                    meta["name"] = f"{meta['generateName']}{next(self._counter)}"
            elif request.action == kmock.action.UPDATE:
                if request.headers.get("Content-Type", "").startswith(APPLY_PATCH):
                    return await self._apply(request)
                self._track_versions(request)
        return await super()._handle(request)

    async def _serve_list(self, request: Any) -> Any:
        listed: Any = await super()._serve_list(request)
        selector = request.params.get("labelSelector")
        if selector:
            listed["items"] = [
                item
                for item in listed["items"]
                if _selects(selector, item.get("metadata", {}).get("labels") or {})
            ]
        return listed

    async def _serve_server_version(self, request: Any) -> Any:
        # kmock says 1.26 (k3s); the chart and the manifests need 1.30 or newer.
        served: Any = await super()._serve_server_version(request)
        minor = KUBERNETES_VERSION.split(".")[1]
        return {**served, "minor": minor, "gitVersion": f"v{KUBERNETES_VERSION}"}

    async def _render_error(self, exc: Exception) -> Any:
        if isinstance(
            exc, kmock.KubernetesEndpointNotFoundError | kmock.KubernetesResourceNotFoundError
        ):
            return _page_not_found()
        # A failed resourceVersion test is a 422 from a real API server (kmock says 500), and
        # Kopf relies on that status to retry its patch on the next cycle instead of failing.
        if isinstance(exc, jsonpatch.JsonPatchTestFailed):
            exc = kmock.KubernetesError(status=422, reason="Invalid", message=str(exc))
        return await super()._render_error(exc)

    def _denied(self, request: Any) -> str | None:
        if self.grant is None or request.resource is None or request.resource.plural is None:
            return None  # API discovery: granted to every authenticated user
        if request.action == kmock.action.UPDATE:
            verb = "update" if request.method == "PUT" else "patch"
        else:
            verb = VERBS.get(request.action, request.method.lower())
        resource = request.resource.plural
        if request.subresource:
            resource = f"{resource}/{request.subresource}"
        group = request.resource.group or ""
        if self.grant.allows(verb, group, resource, request.namespace, request.name):
            return None
        scope = (
            f'in the namespace "{request.namespace}"'
            if request.namespace
            else "at the cluster scope"
        )
        return (
            f'{resource}{"." + group if group else ""} is forbidden: User "system:serviceaccount:'
            f'operator" cannot {verb} resource "{resource}" in API group "{group}" {scope}'
        )

    def _admit(self, request: Any) -> Any:
        group = request.resource.group or ""
        if (group, request.resource.plural) == (
            "apiextensions.k8s.io",
            "customresourcedefinitions",
        ):
            errors = crd_validation.crd_errors(request.data)
        elif (group, request.resource.plural) in self.crds:
            crd = self.crds[group, request.resource.plural]
            stored, errors = crd_validation.admit(request.data, crd)
            request.data.clear()
            request.data.update(stored)
        else:
            return None
        if not errors:
            return None
        name = request.data.get("metadata", {}).get("name", "")
        return _status(
            422, "Invalid", f'{request.resource.plural} "{name}" is invalid: ' + "; ".join(errors)
        )

    async def _apply(self, request: Any) -> aiohttp.web.Response:
        manager = request.params.get("fieldManager")
        if not manager:
            return _status(422, "Invalid", "PATCH: fieldManager is required for apply requests")
        applied = request.data if isinstance(request.data, dict) else json.loads(request.body)
        key = (request.resource, request.namespace, request.name)
        async with self._lock:
            existing = self._objects[key] if key in self._objects else None
            if existing is None or existing.deleted:
                obj = copy.deepcopy(applied)
                meta = obj.setdefault("metadata", {})
                meta.update(uid=str(uuid.uuid4()), generation=1)
                event = "ADDED"
            else:
                obj = copy.deepcopy(existing.raw)
                for path in self._applied.get((key, manager), set()) - _leaves(applied):
                    _remove(obj, path)
                _merge(obj, applied)
                event = "MODIFIED"
                if obj == existing.raw:  # a no-op apply writes nothing, as on a real server
                    return aiohttp.web.json_response(obj)
                if obj.get("spec") != existing.raw.get("spec"):
                    obj["metadata"]["generation"] = (
                        existing.raw["metadata"].get("generation", 1) + 1
                    )
            if request.resource.plural == "customresourcedefinitions":
                errors = crd_validation.crd_errors(obj)
                if errors:
                    return _status(422, "Invalid", "; ".join(errors))
            obj["metadata"]["resourceVersion"] = str(next(self._counter))
            self._applied[key, manager] = _leaves(applied)
            if event == "ADDED":
                self._objects[key] = obj
            else:
                assert existing is not None  # MODIFIED: the object was found above
                existing.create(obj)  # a new version of the object in kmock's history
            raw = self._objects[key].raw
            await self._buses[request.resource].put({"type": event, "object": raw})
        return aiohttp.web.json_response(raw, status=201 if event == "ADDED" else 200)

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
        spec_changed = "spec" in data and current.get("spec") != _patched(current, data).get("spec")
        if request.subresource is None and spec_changed:
            meta["generation"] = current["metadata"].get("generation", 1) + 1


def _selects(selector: str, labels: Mapping[str, str]) -> bool:
    """A label selector's terms (`k=v`, `k==v`, `k!=v`, `k`, `!k`), all of which must hold."""
    for term in (t.strip() for t in selector.split(",") if t.strip()):
        if "!=" in term:
            key, value = term.split("!=", 1)
            if labels.get(key) == value:
                return False
        elif "=" in term:
            key, value = term.replace("==", "=").split("=", 1)
            if labels.get(key) != value:
                return False
        elif term.startswith("!"):
            if term[1:] in labels:
                return False
        elif term not in labels:
            return False
    return True


def _patched(current: dict[str, Any], patch: dict[str, Any]) -> dict[str, Any]:
    result = copy.deepcopy(current)
    _merge(result, patch)
    return result
