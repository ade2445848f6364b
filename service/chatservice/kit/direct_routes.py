"""The hot routes answered without FastAPI's request handling.

A route whose endpoint takes only the `Request` needs nothing FastAPI's handler does for it:
no parameters to solve, no response model to serialise. Yet the way there (the router, the
included router, the route's handler, the exception wrapper, dependency solving) cost a chat
completion about 0.2 ms of CPU, more than validating its body. This layer, the innermost of
the app's own middleware, calls such endpoints itself:

- what is outside it (the request id, metrics and access log, CORS, the body limit) applies
  as before, and `scope["route"]` names the same route template FastAPI would;
- an exception from the endpoint gets the handler the app registered for it (the same
  envelopes); one without a handler propagates, as it would from FastAPI, to the request
  context's 500;
- the route stays an APIRoute, so the OpenAPI document is unchanged, and any other method or
  path goes on to FastAPI (a GET gets its 405).
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Collection, Mapping, Sequence
from typing import Any

from fastapi.routing import iter_route_contexts
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute
from starlette.types import ASGIApp, Receive, Scope, Send

Endpoint = Callable[[Request], Awaitable[Response]]
# As Starlette's app keeps them: a handler may be plain or async.
Handler = Callable[[Request, Any], Response | Awaitable[Response]]


class DirectRoutesMiddleware:
    def __init__(
        self,
        app: ASGIApp,
        routes: Sequence[BaseRoute],
        endpoints: Collection[Endpoint],
        exception_handlers: Mapping[Any, Handler],
    ) -> None:
        self.app = app
        # Read at the first request (Starlette builds its middleware then), so the routes and
        # handlers registered after `add_middleware` count.
        self._source = routes
        self._endpoints = endpoints
        self._handlers = exception_handlers
        self._table: dict[tuple[str, str], tuple[BaseRoute, Endpoint]] | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self._table is None:
            self._table = direct_table(self._source, self._endpoints)
        direct = (
            self._table.get((scope["method"], scope["path"])) if scope["type"] == "http" else None
        )
        if direct is None:
            await self.app(scope, receive, send)
            return
        route, endpoint = direct
        scope["route"] = route  # FastAPI's router records the match here too
        request = Request(scope, receive, send)
        try:
            response = await endpoint(request)
        except Exception as exc:
            handler = self._handler_of(exc)
            if handler is None:
                raise
            answer = handler(request, exc)
            response = await answer if inspect.isawaitable(answer) else answer
        # Not inside the `try`: these responses send their start before anything that can
        # fail, so what fails while one is sent is past any handler (as in FastAPI).
        await response(scope, receive, send)

    def _handler_of(self, exc: Exception) -> Handler | None:
        for cls in type(exc).__mro__:
            handler = self._handlers.get(cls)
            if handler is not None:
                return handler
        return None


def direct_table(
    routes: Sequence[BaseRoute], endpoints: Collection[Endpoint]
) -> dict[tuple[str, str], tuple[BaseRoute, Endpoint]]:
    """(method, path) → route and endpoint, for the routes of `endpoints` as included in the
    app (with the prefixes and dependencies of their routers); each takes only the request."""
    table: dict[tuple[str, str], tuple[BaseRoute, Endpoint]] = {}
    for context in iter_route_contexts(routes):
        endpoint = next((wanted for wanted in endpoints if wanted is context.endpoint), None)
        if endpoint is None or context.path is None:
            continue
        dependant = context.dependant
        if context.param_convertors or any(
            (dependant.dependencies, dependant.path_params, dependant.query_params,
             dependant.header_params, dependant.cookie_params, dependant.body_params)
        ):  # fmt: skip
            raise ValueError(f"{context.path} takes more than the request: not a direct route")
        for method in context.methods or ():
            table[(method, context.path)] = (context.original_route, endpoint)
    missing = set(endpoints) - {endpoint for _, endpoint in table.values()}
    if missing:
        raise ValueError(f"no route serves {sorted(e.__qualname__ for e in missing)}")
    return table
