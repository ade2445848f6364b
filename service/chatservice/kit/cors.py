"""CORS for browser clients, the official OpenAI JS SDK among them.

Starlette's middleware matches request headers by exact name, but the SDK sends a family of
`x-stainless-*` headers that grows with its releases; and it answers refused preflights in
plain text. This one allows the family by prefix and refuses in OpenAI's envelope.
"""

from __future__ import annotations

from collections.abc import Sequence

import orjson
from starlette.datastructures import Headers
from starlette.middleware.cors import SAFELISTED_HEADERS, CORSMiddleware
from starlette.responses import Response
from starlette.types import ASGIApp

from chatservice.errors import error_body

ALLOWED_HEADERS = frozenset(
    h.lower()
    for h in (
        *SAFELISTED_HEADERS,
        "Authorization",
        "X-Request-ID",
        "OpenAI-Organization",
        "OpenAI-Project",
        "OpenAI-Beta",
    )
)
ALLOWED_HEADER_PREFIXES = ("x-stainless-",)
# The SDK reads these from responses (request id for errors, when and whether to retry).
EXPOSED_HEADERS = ("X-Request-ID", "Retry-After", "X-Should-Retry")


class BrowserCORSMiddleware(CORSMiddleware):
    def __init__(self, app: ASGIApp, allow_origins: Sequence[str]) -> None:
        # "*" makes the parent mirror the requested headers; `preflight_response` checks
        # them against the policy above first.
        super().__init__(
            app,
            allow_origins=allow_origins,
            allow_methods=["GET", "POST", "OPTIONS"],
            allow_headers=["*"],
            expose_headers=EXPOSED_HEADERS,
        )

    def preflight_response(self, request_headers: Headers) -> Response:
        requested = request_headers.get("access-control-request-headers", "")
        refused = [name for name in _names(requested) if not _allowed(name)]
        response = super().preflight_response(request_headers=request_headers)
        if response.status_code == 200 and not refused:
            return response
        reason = str(bytes(response.body), "utf-8") if response.status_code != 200 else ""
        message = reason or f"Disallowed CORS headers: {', '.join(refused)}"
        body = orjson.dumps(error_body(message + ".", "invalid_request_error", code="cors"))
        headers = {
            name: value
            for name, value in response.headers.items()
            if name not in ("content-length", "content-type")
        }
        if refused:
            headers.pop("access-control-allow-headers", None)
        return Response(body, 400, headers=headers, media_type="application/json")


def _names(header_list: str) -> list[str]:
    return [name.strip().lower() for name in header_list.split(",") if name.strip()]


def _allowed(name: str) -> bool:
    return name in ALLOWED_HEADERS or name.startswith(ALLOWED_HEADER_PREFIXES)
