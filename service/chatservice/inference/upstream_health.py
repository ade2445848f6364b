"""Backend checks for `/health/`: one `GET /models` per upstream (base URL and key), shared by
every route on it and by concurrent requests, and reused for a few seconds, so a public
health endpoint cannot multiply into upstream calls."""

from __future__ import annotations

import asyncio
import hashlib
import time
from dataclasses import dataclass
from typing import Literal

import orjson

from chatservice.config import ModelRoute
from chatservice.inference.base import HEALTHY, BackendHealth
from chatservice.kit.http_client import HTTPClient, HTTPClientError


@dataclass(frozen=True, slots=True)
class _ModelList:
    """One upstream's answer: the model ids it lists, or why there are none."""

    ids: frozenset[str]
    failure: BackendHealth | None = None


class UpstreamChecks:
    def __init__(self, http: HTTPClient, timeout: float, ttl: float) -> None:
        self._http = http
        self._timeout = timeout
        self._ttl = ttl
        self._cache: dict[tuple[str, str], tuple[float, asyncio.Task[_ModelList]]] = {}

    async def check(
        self,
        route: ModelRoute,
        url: str,
        headers: dict[str, str],
        server_hostname: str | None = None,
    ) -> BackendHealth:
        """`server_hostname`: TLS's name for a URL with an address (a discovered endpoint)."""
        listing = await self._listing(url, headers, server_hostname)
        if listing.failure is not None:
            return listing.failure
        model = route.upstream_model or route.name
        if model not in listing.ids:
            return BackendHealth("degraded", f"the upstream does not list the model `{model}`")
        return HEALTHY

    def _listing(
        self, url: str, headers: dict[str, str], server_hostname: str | None
    ) -> asyncio.Task[_ModelList]:
        # The key is part of the cache key (hashed: this dict is no place for secrets), as two
        # routes on one URL with different keys can get different answers.
        secret = headers.get("Authorization", "").encode()
        key = (url, hashlib.sha256(secret).hexdigest())
        now = time.monotonic()
        cached = self._cache.get(key)
        if cached is not None and cached[0] > now:
            return cached[1]
        task = asyncio.ensure_future(self._fetch(url, headers, server_hostname))
        self._cache[key] = (now + self._ttl, task)
        return task

    async def _fetch(
        self, url: str, headers: dict[str, str], server_hostname: str | None
    ) -> _ModelList:
        try:
            async with asyncio.timeout(self._timeout):
                response = await self._http.request(
                    "GET", url, headers=headers, server_hostname=server_hostname
                )
                try:
                    status = response.status
                    body = await response.read()
                finally:
                    response.release()
        except TimeoutError:
            return _failed("unavailable", "the upstream did not answer in time")
        except HTTPClientError as exc:
            return _failed(
                "unavailable", f"the upstream could not be reached ({type(exc).__name__})"
            )
        if status in (401, 403):
            return _failed("degraded", f"the upstream refused this service's API key ({status})")
        if status >= 400:
            return _failed("degraded", f"the upstream answered GET /models with {status}")
        try:
            data = orjson.loads(body).get("data")
            ids = frozenset(str(m["id"]) for m in data if isinstance(m, dict) and "id" in m)
        except (ValueError, AttributeError, TypeError):
            return _failed("degraded", "the upstream's GET /models is not a model list")
        return _ModelList(ids)


def _failed(status: Literal["degraded", "unavailable"], error: str) -> _ModelList:
    return _ModelList(frozenset(), BackendHealth(status, error))
