"""What the OpenAPI document says beyond FastAPI's defaults: bearer authentication, and for
each route exactly the error statuses it can send, each with the envelope's schema.

FastAPI documents a 422 for every route with parameters; this service answers validation
errors with 400, so the 422 is dropped with its schemas.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from chatservice.errors import ErrorEnvelope

BEARER = "bearerAuth"
SECURITY_SCHEMES = {
    BEARER: {
        "type": "http",
        "scheme": "bearer",
        "description": "An API key: `Authorization: Bearer sk-…`.",
    }
}
AUTHENTICATED: dict[str, Any] = {"security": [{BEARER: []}]}

_DESCRIPTIONS = {
    400: "Invalid request (`param` names the field)",
    401: "Missing or wrong API key",
    403: "The key may not do this (it needs an admin key)",
    404: "Unknown model",
    413: "Request body too large",
    429: "A rate limit (`rate_limit_exceeded`, see `Retry-After`), too many wrong API keys "
    "from this address, or the upstream's rate limit",
    500: "A bug: the message says nothing internal; quote `X-Request-ID`",
    502: "The upstream failed or answered something unusable",
    503: "The database cannot be reached (see `Retry-After`)",
    504: "The upstream timed out",
}
# Any request can meet these: a bug, or a body over the size limit.
_EVERY_ROUTE = (413, 500)
# What authentication can answer: no or a wrong key, too many wrong keys, no database.
AUTH_ERRORS = (401, 429, 503)


def error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    return {
        status: {"model": ErrorEnvelope, "description": _DESCRIPTIONS[status]}
        for status in sorted({*statuses, *_EVERY_ROUTE})
    }


def with_security_and_errors(
    generate: Callable[[], dict[str, Any]],
) -> Callable[[], dict[str, Any]]:
    finished: dict[str, Any] | None = None

    def openapi() -> dict[str, Any]:
        nonlocal finished
        if finished is None:
            document = generate()
            document.setdefault("components", {})["securitySchemes"] = SECURITY_SCHEMES
            for operations in document.get("paths", {}).values():
                for operation in operations.values():
                    operation.get("responses", {}).pop("422", None)
            schemas = document["components"].get("schemas", {})
            for name in ("HTTPValidationError", "ValidationError"):
                schemas.pop(name, None)
            finished = document
        return finished

    return openapi
