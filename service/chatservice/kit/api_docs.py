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
OAUTH2 = "oauth2Password"
TOKEN_URL = "/api/v1/auth/token"  # noqa: S105 - a path
SECURITY_SCHEMES = {
    BEARER: {
        "type": "http",
        "scheme": "bearer",
        "description": "An API key: `Authorization: Bearer sk-…`.",
    },
    OAUTH2: {
        "type": "oauth2",
        "description": "A person's login: a short-lived JWT from `POST /api/v1/auth/token`, "
        "sent as `Authorization: Bearer <token>`. Accepted by the management API.",
        "flows": {"password": {"tokenUrl": TOKEN_URL, "scopes": {}}},
    },
}
AUTHENTICATED: dict[str, Any] = {"security": [{BEARER: []}]}
# The management API (users, teams, keys) takes a key or a login token.
MANAGEMENT: dict[str, Any] = {"security": [{BEARER: []}, {OAUTH2: []}]}

_DESCRIPTIONS = {
    400: "Invalid request (`param` names the field)",
    401: "Missing or wrong API key or login token, or wrong email or password",
    403: "The key or login may not do this (not an admin, or a model it may not use)",
    404: "No such model, or no such resource visible to this key or login",
    409: "Conflicts with what exists (an email taken, a revoked key)",
    413: "Request body too large",
    429: "A rate limit (`rate_limit_exceeded`, see `Retry-After`), a budget spent "
    "(`insufficient_quota`), too many wrong API keys or logins, or the upstream's rate limit",
    500: "A bug: the message says nothing internal; quote `X-Request-ID`",
    502: "The upstream failed or answered something unusable",
    503: "The database cannot be reached (see `Retry-After`), or logins are not configured",
    504: "The upstream timed out",
}
# Any request can meet these: a bug, or a body over the size limit.
_EVERY_ROUTE = (413, 500)
# What authentication can answer: no or a wrong key, too many wrong keys, no database.
AUTH_ERRORS = (401, 429, 503)
# The management API's: those, and a caller without the rights (403).
MANAGEMENT_ERRORS = (*AUTH_ERRORS, 403)


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
