"""The service app in-process for tests: settings for a database and the stub upstream, and an
httpx client that runs the app's lifespan."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import uvicorn
from fastapi import FastAPI

from chatservice.config import DEVELOPMENT_ADMIN_KEY, ModelRoute, Settings
from chatservice.runtime import Runtime
from tests.ports import free_port
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


@contextlib.asynccontextmanager
async def serve_on_loopback(app: FastAPI, start_timeout: float = 15.0) -> AsyncIterator[str]:
    """The app on a real loopback socket (uvicorn, lifespan on), for what needs real connections;
    yields its base URL."""
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None, lifespan="on")
    )
    task = asyncio.create_task(server.serve())
    deadline = time.monotonic() + start_timeout
    while not server.started:
        if task.done() or time.monotonic() > deadline:
            server.should_exit = True
            raise RuntimeError(f"the app did not start on port {port} within {start_timeout} s")
        await asyncio.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task


CHAT = "/api/v1/chat/completions"


def sse_events(body: str) -> list[Any]:
    """The `data:` payloads of an SSE body, JSON-decoded, with the final `[DONE]` as is."""
    events = [line[len("data: ") :] for line in body.split("\n\n") if line.startswith("data: ")]
    return [e if e == "[DONE]" else json.loads(e) for e in events]
