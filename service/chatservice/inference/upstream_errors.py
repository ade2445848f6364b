"""What an upstream's error answer becomes: an error class the client may see, and a log
line (with the request id, added by the log formatter) that keeps what the client may not."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import orjson

from chatservice.config import ModelRoute
from chatservice.errors import (
    ChatServiceError,
    UpstreamAuthenticationError,
    UpstreamClientError,
    UpstreamError,
    UpstreamRateLimitError,
    UpstreamUnreachableError,
)
from chatservice.kit.http_client import HTTPClientError, Response
from chatservice.observability.context import current_record

log = logging.getLogger("chatservice.upstream")

# Enough of an upstream's error body to see its reason, not enough to flood the log.
LOGGED_BODY_CHARS = 2000
# The most of an error body read (for its message): the rest is dropped with the connection.
ERROR_BODY_BYTES = 64 * 1024


async def status_error(
    route: ModelRoute, response: Response, read_seconds: float
) -> ChatServiceError:
    """What the upstream's error answer means, its body read for at most `read_seconds`."""
    status = response.status
    try:
        async with asyncio.timeout(read_seconds):
            raw = await response.read(ERROR_BODY_BYTES)
    except (HTTPClientError, TimeoutError):
        raw = b""
    finally:
        response.release()
    try:
        body: Any = orjson.loads(raw)
    except ValueError:
        body = None
    error = _for_status(route, status, body)
    log.warning(
        "upstream answered an error",
        extra={
            "model": route.name,
            "upstream_status": status,
            "outcome": error.outcome,
            "upstream_body": raw[:LOGGED_BODY_CHARS].decode(errors="replace"),
        },
    )
    return error


def _for_status(route: ModelRoute, status: int, body: Any) -> ChatServiceError:
    if status in (401, 403):
        return UpstreamAuthenticationError(
            f"The upstream for `{route.name}` refused this service's credentials. This is a "
            "configuration problem of the service, not of your request; tell its operators"
            f"{_quoting_request_id()}."
        )
    if status == 429:
        # The upstream's text can name its account, organisation and limits: logged only.
        return UpstreamRateLimitError(
            f"The upstream for `{route.name}` is rate limited; retry after a while."
        )
    if status >= 500:
        return UpstreamError(
            f"The upstream for `{route.name}` failed with status {status} (it could not "
            f"process this request; its reason is in the service's log{_quoting_request_id()}).",
            code="upstream_server_error",
        )
    error = body.get("error") if isinstance(body, dict) else None
    details = error if isinstance(error, dict) else {}
    return UpstreamClientError(
        status,
        error_message(body) or f"The upstream rejected the request with status {status}.",
        param=details.get("param") if isinstance(details.get("param"), str) else None,
        code=details.get("code") if isinstance(details.get("code"), str) else None,
    )


def _quoting_request_id() -> str:
    record = current_record()
    return f", under request id {record.request_id}" if record is not None else ""


def broken(route: ModelRoute, exc: Exception, *, mid_stream: bool = False) -> UpstreamError:
    """A connection that failed: before an answer (unreachable) or while streaming (cut)."""
    error: UpstreamError
    if mid_stream:
        error = UpstreamError(
            f"The upstream for `{route.name}` closed the connection mid-stream: the answer is "
            "incomplete.",
            code="upstream_stream_broken",
        )
    else:
        error = UpstreamUnreachableError(f"Could not reach the upstream for `{route.name}`.")
    log.warning(
        "upstream connection failed",
        extra={
            "model": route.name,
            "outcome": error.outcome,
            "error": type(exc).__name__,
            "detail": str(exc),
        },
    )
    return error


def error_message(body: Any) -> str | None:
    if isinstance(body, dict):
        error = body.get("error")
        if isinstance(error, dict) and isinstance(error.get("message"), str):
            return str(error["message"])
        if isinstance(error, str):
            return error
    return None
