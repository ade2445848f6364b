"""`/v1/...` as another spelling of `/api/v1/...`: many OpenAI tools hard-code `/v1` as the
base path. The path is rewritten before anything else sees it, so logs, metrics and traces
name one route template whichever spelling the client used."""

from __future__ import annotations

from starlette.types import ASGIApp, Receive, Scope, Send

from chatservice.config import API_PREFIX

ALIAS_PREFIX = "/v1/"


class V1AliasMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"].startswith(ALIAS_PREFIX):
            path = API_PREFIX + scope["path"][len("/v1") :]
            scope = {**scope, "path": path, "raw_path": path.encode()}
        await self.app(scope, receive, send)
