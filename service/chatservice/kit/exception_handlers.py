"""Exception handlers that turn every expected error into OpenAI's envelope.

Unexpected errors are not handled here: `RequestContextMiddleware` logs them with the request
id and answers a 500 that says nothing internal.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException
from starlette.routing import Match

from chatservice.errors import ChatServiceError, error_body
from chatservice.observability import context

_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE")
_HTTP_CODES = {404: "unknown_url", 405: "method_not_allowed", 413: "request_too_large"}


def install(app: FastAPI) -> None:
    @app.exception_handler(ChatServiceError)
    async def chat_service_error(request: Request, exc: ChatServiceError) -> JSONResponse:
        context.set_outcome(exc.outcome)
        return JSONResponse(exc.body(), exc.status_code, headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        context.set_outcome("invalid_request")
        message, param = describe_validation_errors(exc.errors())
        return JSONResponse(
            error_body(message, "invalid_request_error", param=param, code="invalid_value"), 400
        )

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> JSONResponse:
        if exc.status_code == 404 and exc.detail == "Not Found":
            message = f"Unknown request URL: {request.method} {request.url.path}."
        else:
            message = str(exc.detail)
        headers = exc.headers
        if exc.status_code == 405:
            headers = {**(headers or {}), "Allow": allowed_methods(request)}
        return JSONResponse(
            error_body(message, "invalid_request_error", code=_HTTP_CODES.get(exc.status_code)),
            exc.status_code,
            headers=headers,
        )


def allowed_methods(request: Request) -> str:
    """Every method some route serves at this path: Starlette's 405 names only the methods of
    the first route that matched the path (a GET and a PUT route would answer `Allow: GET`)."""
    routes = request.app.router.routes
    allowed = [
        method
        for method in _METHODS
        if any(route.matches({**request.scope, "method": method})[0] is Match.FULL
               for route in routes)
    ]  # fmt: skip
    return ", ".join(allowed)


def describe_validation_errors(errors: Sequence[Any]) -> tuple[str, str | None]:
    """The first problem as a sentence, and the parameter it is about (`messages[0].role`)."""
    first = errors[0]
    # Without where it was ("body", "query", "path"): `param` names the field, as OpenAI's does.
    location = list(first.get("loc", ()))
    if location and location[0] in ("body", "query", "path"):
        location = location[1:]
    if first.get("type") == "json_invalid":
        return "We could not parse the JSON body of your request: it is not valid JSON.", None
    if not location:
        return (
            "The request body must be a JSON object, sent with `Content-Type: application/json`.",
            None,
        )
    param = ""
    for part in location:
        param += f"[{part}]" if isinstance(part, int) else (f".{part}" if param else str(part))
    message = f"Invalid value for '{param}': {first.get('msg', 'invalid value')}."
    if len(errors) > 1:
        message += f" ({len(errors) - 1} more problem{'s' if len(errors) > 2 else ''} found.)"
    return message, param
