"""The one module that talks to the Kubernetes API (Kopf does its own watching).

A small aiohttp client over the same credentials Kopf logs in with, so that tests point both
at one emulated API server through an ordinary kubeconfig. It uses seven calls (get, list,
create, server-side apply, merge-patch of status, delete, group discovery); a client library
would add a second HTTP stack and its own auth next to Kopf's for them (README, "Kubernetes
client").
Any status and any content type is an answer: real API servers send `text/plain` for unknown
paths, some 5xx of aggregated APIs and 429 of priority-and-fairness (with Retry-After).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any, Literal

import aiohttp
import kopf

from chatservice_operator.identity import MANAGER

Obj = dict[str, Any]
Login = Callable[[], kopf.ConnectionInfo]

PLURALS = {
    "ConfigMap": "configmaps",
    "Pod": "pods",
    "Event": "events",
    "Service": "services",
    "Deployment": "deployments",
    "Job": "jobs",
    "HorizontalPodAutoscaler": "horizontalpodautoscalers",
    "PodDisruptionBudget": "poddisruptionbudgets",
    "ServiceMonitor": "servicemonitors",
    "ChatService": "chatservices",
    "CustomResourceDefinition": "customresourcedefinitions",
}
MERGE_PATCH = "application/merge-patch+json"
APPLY_PATCH = "application/apply-patch+yaml"  # JSON is YAML: the server takes a JSON body too
FIELD_MANAGER = MANAGER
logger = logging.getLogger(__name__)


class ApiError(Exception):
    def __init__(
        self, status: int, method: str, path: str, message: str, retry_after: float | None = None
    ) -> None:
        super().__init__(f"{method} {path}: HTTP {status}: {message}")
        self.status = status
        # Seconds the server asked us to wait (429 of priority-and-fairness, some 503s).
        self.retry_after = retry_after


def _retry_after(value: str | None) -> float | None:
    try:
        return max(0.0, float(value)) if value is not None else None
    except ValueError:
        return None  # an HTTP date: rare from API servers; the caller's own delay applies


async def _read_body(response: aiohttp.ClientResponse) -> Obj:
    """The body as a dict: a JSON object (a Kubernetes object or Status) or, for anything else
    (`404 page not found`, an HTML page of a proxy), the text as the message."""
    if response.status == 204:
        return {}
    text = await response.text(errors="replace")
    if "json" in response.content_type:
        try:
            parsed = json.loads(text)
        except ValueError:
            parsed = None
        if isinstance(parsed, dict):
            return parsed
    return {"message": text.strip()[:500] or response.reason or f"HTTP {response.status}"}


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


def object_path(api_version: str, kind: str, namespace: str | None, name: str | None = None) -> str:
    """The REST path of a kind's collection, or of one object; namespace None: cluster-scoped."""
    prefix = f"/api/{api_version}" if "/" not in api_version else f"/apis/{api_version}"
    scope = f"/namespaces/{namespace}" if namespace is not None else ""
    path = f"{prefix}{scope}/{PLURALS[kind]}"
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
    ) -> tuple[int, Obj, float | None]:
        if self._expired():
            await self._relogin()
        url = self._info.server.rstrip("/") + path
        headers = {"Content-Type": content_type} if json is not None else {}
        async with self._session.request(
            method, url, json=json, headers=headers, params=params
        ) as response:
            status = response.status
            body = await _read_body(response)
            retry_after = _retry_after(response.headers.get("Retry-After"))
        if status == 401 and relogin:
            # Bound service-account tokens and exec-plugin tokens rotate: log in again, once.
            await self._relogin()
            return await self._request(
                method, path, json=json, content_type=content_type, params=params, relogin=False
            )
        return status, body, retry_after

    def _expired(self) -> bool:
        expiration = self._info.expiration
        if expiration is None:
            return False
        if expiration.tzinfo is None:
            expiration = expiration.replace(tzinfo=UTC)
        return expiration <= datetime.now(UTC)

    async def _relogin(self) -> None:
        await self._session.close()
        self._info = self._login()
        self._session = self._open(self._info)

    async def _checked(self, method: str, path: str, **kwargs: Any) -> tuple[int, Obj]:
        status, body, retry_after = await self._request(method, path, **kwargs)
        if status >= 400 and status not in (404, 409):
            raise ApiError(status, method, path, str(body.get("message", body)), retry_after)
        return status, body

    async def get(self, api_version: str, kind: str, namespace: str, name: str) -> Obj | None:
        status, body = await self._checked("GET", object_path(api_version, kind, namespace, name))
        return None if status == 404 else body

    async def list(
        self, api_version: str, kind: str, namespace: str, label_selector: str
    ) -> list[Obj]:
        path = object_path(api_version, kind, namespace)
        status, body = await self._checked("GET", path, params={"labelSelector": label_selector})
        if status == 404:
            raise ApiError(status, "GET", path, str(body.get("message", body)))
        items: list[Obj] = body.get("items") or []
        return items

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

    async def apply(self, obj: Obj) -> None:
        """Server-side apply: the object becomes what we send in every field we manage, and a
        field we managed before but no longer send is removed (a merge patch would keep it)."""
        meta = obj["metadata"]
        path = object_path(obj["apiVersion"], obj["kind"], meta.get("namespace"), meta["name"])
        # force: we are the controller of our children; a hand edit of our fields is drift.
        params = {"fieldManager": FIELD_MANAGER, "force": "true"}
        status, body = await self._checked(
            "PATCH", path, json=obj, content_type=APPLY_PATCH, params=params
        )
        if status in (404, 409):
            raise ApiError(status, "PATCH", path, str(body.get("message", body)))

    async def delete(self, api_version: str, kind: str, namespace: str, name: str) -> None:
        path = object_path(api_version, kind, namespace, name)
        await self._checked("DELETE", path, params={"propagationPolicy": "Background"})

    async def has_api_group(self, group: str) -> bool:
        """Whether the server serves the group. A real server answers an unknown group with a
        `text/plain` 404; any other failure (an aggregated API down, 429) counts as absent for
        now, and the caller asks again later."""
        status, body, _ = await self._request("GET", f"/apis/{group}")
        if status not in (200, 404):
            logger.warning("Discovery of %s: HTTP %s: %s", group, status, body.get("message"))
        return status == 200

    async def ensure(
        self, desired: Obj, observed: Obj | None = None, *, fetched: bool = False
    ) -> Literal["created", "patched", "unchanged"]:
        """Make `desired` exist as built: server-side apply it when absent or drifted.

        `fetched` says the caller already read the object (then `observed=None` means absent).
        """
        meta = desired["metadata"]
        if not fetched:
            observed = await self.get(
                desired["apiVersion"], desired["kind"], meta["namespace"], meta["name"]
            )
        if observed is not None and contains(observed, desired):
            return "unchanged"  # no request: an apply that changes nothing still costs one
        await self.apply(desired)
        return "created" if observed is None else "patched"

    async def ensure_absent(self, api_version: str, kind: str, namespace: str, name: str) -> None:
        if await self.get(api_version, kind, namespace, name) is not None:
            await self.delete(api_version, kind, namespace, name)
