"""One pure-ASGI middleware for what every request needs: a request id, metrics, an access
log line, and the last line of defence against unhandled errors.

Pure ASGI (not BaseHTTPMiddleware) so streaming responses and client disconnects pass
through untouched.
"""

from __future__ import annotations

import json
import logging
import re
import secrets
import time
from typing import Any

from opentelemetry import trace
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from chatservice.config import CHAT_COMPLETIONS_PATH
from chatservice.errors import INTERNAL_ERROR_MESSAGE, error_body
from chatservice.observability import context, metrics

log = logging.getLogger("chatservice.access")
error_log = logging.getLogger("chatservice.errors")

REQUEST_ID_HEADER = b"x-request-id"
# A client may pass its own id for correlation; anything else gets a fresh one.
_SAFE_REQUEST_ID = re.compile(rb"^[A-Za-z0-9._:-]{1,128}$")
# Status recorded when the client went away before any response was sent (nginx's 499).
CLIENT_CLOSED = 499


class RequestContextMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        request_id = _incoming_request_id(scope) or secrets.token_hex(16)
        scope.setdefault("state", {})["request_id"] = request_id
        record = context.RequestRecord(request_id)
        token = context.bind(record)
        started = time.perf_counter()
        status = CLIENT_CLOSED
        response_started = False
        method = scope["method"]
        in_flight = metrics.child(metrics.HTTP_IN_FLIGHT, method)

        async def send_with_id(message: Message) -> None:
            nonlocal status, response_started
            if message["type"] == "http.response.start":
                status = message["status"]
                response_started = True
                headers = list(message.get("headers", []))
                headers.append((REQUEST_ID_HEADER, request_id.encode()))
                message = {**message, "headers": headers}
            await send(message)

        in_flight.inc()
        try:
            await self.app(scope, receive, send_with_id)
        except Exception:
            # Everything a client can act on was already turned into an envelope by the
            # exception handlers; what reaches here is a bug. Log it whole, say nothing.
            error_log.exception(
                "unhandled error", extra={"request_id": request_id, "path": scope["path"]}
            )
            record.outcome = "error"
            if not response_started:
                status = 500
                await _send_internal_error(send, request_id)
        finally:
            in_flight.dec()
            elapsed = time.perf_counter() - started
            route = _route_template(scope)
            status_class = metrics.status_class(status)
            outcome = record.outcome or _outcome_of_status(status)
            metrics.child(metrics.HTTP_REQUESTS, method, route, status_class).inc()
            metrics.observe_latency(metrics.HTTP_DURATION, elapsed, method, route)
            if route == CHAT_COMPLETIONS_PATH:
                # Here, not in the chat service, so requests refused before it (a bad key, an
                # invalid body, an unknown model) are counted too.
                stream = context.UNKNOWN if record.stream is None else str(record.stream).lower()
                model = record.model or context.UNKNOWN
                metrics.child(metrics.CHAT_COMPLETIONS, model, stream, outcome).inc()
            fields = {
                "request_id": request_id,
                "method": method,
                "route": route,
                "status": status,
                "outcome": outcome,
                "duration_ms": round(elapsed * 1000, 3),
            }
            _add_request_details(fields, record)
            log.info("request", extra=fields)
            context.unbind(token)


def _add_request_details(fields: dict[str, object], record: context.RequestRecord) -> None:
    """The trace, the key's id, the model and the tokens, for what has them."""
    # The server span is still open here: FastAPI's instrumentation wraps this middleware.
    span = trace.get_current_span().get_span_context()
    if span.is_valid:
        fields["trace_id"] = format(span.trace_id, "032x")
        fields["span_id"] = format(span.span_id, "016x")
    for name in ("key_id", "model", "prompt_tokens", "completion_tokens"):
        value = getattr(record, name)
        if value is not None:
            fields[name] = value


def _outcome_of_status(status: int) -> str:
    """For responses no error class described (Starlette's own 404/405, CORS refusals, ...)."""
    if status == CLIENT_CLOSED:
        return "cancelled"
    if status < 400:
        return "success"
    if status == 404:
        return "not_found"
    return "invalid_request" if status < 500 else "error"


def _incoming_request_id(scope: Scope) -> str | None:
    for name, value in scope["headers"]:
        if name == REQUEST_ID_HEADER and _SAFE_REQUEST_ID.match(value):
            return str(value.decode())
    return None


def _route_template(scope: Scope) -> str:
    # The router records the matched route in the scope; a raw path would be unbounded.
    route: Any = scope.get("route")
    path = getattr(route, "path", None)
    return path if isinstance(path, str) else "unmatched"


async def _send_internal_error(send: Send, request_id: str) -> None:
    body = json.dumps(error_body(INTERNAL_ERROR_MESSAGE, "server_error")).encode()
    await send(
        {
            "type": "http.response.start",
            "status": 500,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (REQUEST_ID_HEADER, request_id.encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
