"""The service app in-process for tests: settings for a database and the stub upstream, and an
httpx client that runs the app's lifespan."""

from __future__ import annotations

from collections.abc import Callable

import httpx
from fastapi import FastAPI

from chatservice.config import DEVELOPMENT_ADMIN_KEY, ModelRoute, Settings
from chatservice.runtime import Runtime
from tests.service.stub_upstream import StubUpstream

ADMIN_KEY = DEVELOPMENT_ADMIN_KEY
AUTH = {"Authorization": f"Bearer {ADMIN_KEY}"}


def make_settings(
    database_url: str, stub: StubUpstream | None = None, **overrides: object
) -> Settings:
    models = [ModelRoute(name="echo", backend="echo")]
    if stub is not None:
        models.append(
            ModelRoute(
                name="upstream",
                backend="openai",
                base_url=stub.base_url,
                upstream_model="stub-model-v1",
                api_key="sk-upstream-secret",
            )
        )
    values: dict[str, object] = {
        "database_url": database_url,
        "models": models,
        "upstream_retry_backoff": 0.01,
        "upstream_first_byte_timeout": 2.0,
        "upstream_chunk_timeout": 1.0,
        "upstream_total_timeout": 10.0,
    }
    values.update(overrides)
    return Settings.model_validate(values)


def serve(app: FastAPI, on_start: Callable[[Runtime], None] | None = None) -> Served:
    return Served(app, on_start)


class Served:
    """Run the app's lifespan and give an httpx client that talks to it in-process."""

    def __init__(self, app: FastAPI, on_start: Callable[[Runtime], None] | None) -> None:
        self.app = app
        self.on_start = on_start

    async def __aenter__(self) -> httpx.AsyncClient:
        self._lifespan = self.app.router.lifespan_context(self.app)
        await self._lifespan.__aenter__()
        if self.on_start is not None:
            self.on_start(self.app.state.runtime)
        self._client = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=self.app), base_url="http://testserver"
        )
        return self._client

    async def __aexit__(self, *exc: object) -> None:
        await self._client.aclose()
        await self._lifespan.__aexit__(None, None, None)
