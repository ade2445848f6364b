"""The one module that talks to the Kubernetes API (Kopf does its own watching).

A small aiohttp client over the same credentials Kopf logs in with, so that tests point both
at one emulated API server through an ordinary kubeconfig.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Literal

import aiohttp
import kopf

Obj = dict[str, Any]
Login = Callable[[], kopf.ConnectionInfo]

PLURALS = {
    "ConfigMap": "configmaps",
    "Service": "services",
    "Deployment": "deployments",
    "Job": "jobs",
    "HorizontalPodAutoscaler": "horizontalpodautoscalers",
    "PodDisruptionBudget": "poddisruptionbudgets",
    "ServiceMonitor": "servicemonitors",
    "ChatService": "chatservices",
}
MERGE_PATCH = "application/merge-patch+json"


class ApiError(Exception):
    def __init__(self, status: int, method: str, path: str, message: str) -> None:
        super().__init__(f"{method} {path}: HTTP {status}: {message}")
        self.status = status


def contains(observed: Any, desired: Any) -> bool:
    """Whether every field we set still has our value; fields the server added are not drift."""
    if isinstance(desired, Mapping):
        return isinstance(observed, Mapping) and all(
            key in observed and contains(observed[key], value) for key, value in desired.items()
        )
    if isinstance(desired, list):
        return (
            isinstance(observed, list)
            and len(observed) == len(desired)
            and all(contains(o, d) for o, d in zip(observed, desired, strict=True))
        )
    return bool(observed == desired)


def object_path(api_version: str, kind: str, namespace: str, name: str | None = None) -> str:
    prefix = f"/api/{api_version}" if "/" not in api_version else f"/apis/{api_version}"
    path = f"{prefix}/namespaces/{namespace}/{PLURALS[kind]}"
    return f"{path}/{name}" if name is not None else path


class KubeClient:
    def __init__(self, login: Login) -> None:
        self._login = login
        self._info = login()
        self._session = self._open(self._info)

    @staticmethod
    def _open(info: kopf.ConnectionInfo) -> aiohttp.ClientSession:
        return aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(ssl=info.as_ssl_context()),
            headers={**info.as_http_headers(), "User-Agent": "chatservice-operator"},
            timeout=aiohttp.ClientTimeout(total=30),
        )

    async def close(self) -> None:
        await self._session.close()

    async def _request(
        self,
        method: str,
        path: str,
        *,
        json: Obj | None = None,
        content_type: str = "application/json",
        params: Mapping[str, str] | None = None,
        relogin: bool = True,
    ) -> tuple[int, Obj]:
        url = self._info.server.rstrip("/") + path
        headers = {"Content-Type": content_type} if json is not None else {}
        async with self._session.request(
            method, url, json=json, headers=headers, params=params
        ) as response:
            status = response.status
            body: Obj = await response.json(content_type=None) if status != 204 else {}
        if status == 401 and relogin:
            # Bound service-account tokens rotate: read the credentials again, once.
            await self._session.close()
            self._info = self._login()
            self._session = self._open(self._info)
            return await self._request(
                method, path, json=json, content_type=content_type, params=params, relogin=False
            )
        return status, body

    async def _checked(self, method: str, path: str, **kwargs: Any) -> tuple[int, Obj]:
        status, body = await self._request(method, path, **kwargs)
        if status >= 400 and status not in (404, 409):
            raise ApiError(status, method, path, str(body.get("message", body)))
        return status, body

    async def get(self, api_version: str, kind: str, namespace: str, name: str) -> Obj | None:
        status, body = await self._checked("GET", object_path(api_version, kind, namespace, name))
        return None if status == 404 else body

    async def create(self, obj: Obj) -> bool:
        """Create; False when it already exists, which deterministic names make a success."""
        meta = obj["metadata"]
        path = object_path(obj["apiVersion"], obj["kind"], meta["namespace"])
        status, body = await self._checked("POST", path, json=obj)
        if status == 404:
            raise ApiError(status, "POST", path, str(body.get("message", body)))
        return status != 409

    async def patch(
        self,
        api_version: str,
        kind: str,
        namespace: str,
        name: str,
        patch: Obj,
        subresource: str | None = None,
    ) -> None:
        path = object_path(api_version, kind, namespace, name)
        path = f"{path}/{subresource}" if subresource else path
        status, body = await self._checked("PATCH", path, json=patch, content_type=MERGE_PATCH)
        if status in (404, 409):
            raise ApiError(status, "PATCH", path, str(body.get("message", body)))

    async def delete(self, api_version: str, kind: str, namespace: str, name: str) -> None:
        path = object_path(api_version, kind, namespace, name)
        await self._checked("DELETE", path, params={"propagationPolicy": "Background"})

    async def has_api_group(self, group: str) -> bool:
        status, _ = await self._request("GET", f"/apis/{group}")
        return status == 200

    async def ensure(
        self, desired: Obj, observed: Obj | None = None, *, fetched: bool = False
    ) -> Literal["created", "patched", "unchanged"]:
        """Make `desired` exist as built: create it, or patch the fields that drifted.

        `fetched` says the caller already read the object (then `observed=None` means absent).
        """
        meta = desired["metadata"]
        if not fetched:
            observed = await self.get(
                desired["apiVersion"], desired["kind"], meta["namespace"], meta["name"]
            )
        if observed is None:
            if await self.create(desired):
                return "created"
            observed = {}
        if contains(observed, desired):
            return "unchanged"
        # A merge patch replaces lists whole, so a drifted container list comes back exactly.
        await self.patch(
            desired["apiVersion"], desired["kind"], meta["namespace"], meta["name"], desired
        )
        return "patched"

    async def ensure_absent(self, api_version: str, kind: str, namespace: str, name: str) -> None:
        if await self.get(api_version, kind, namespace, name) is not None:
            await self.delete(api_version, kind, namespace, name)
