"""A bound on request bodies, enforced before they are buffered.

A declared `Content-Length` over the limit is answered 413 without reading a byte of the body.
A body without one (chunked) is counted as it arrives, and the read that crosses the limit
raises `RequestTooLargeError`, which the exception handlers answer 413. Bodies within a
declared length pass untouched: the server itself never delivers more than it declared.
"""

from __future__ import annotations

import orjson
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from chatservice.errors import RequestTooLargeError


class BodySizeLimitMiddleware:
    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = _content_length(scope)
        if declared is None:
            await self.app(scope, self._counting(receive), send)
        elif declared > self.max_bytes:
            await _refuse(send, self._error())
        else:
            await self.app(scope, receive, send)

    def _error(self) -> RequestTooLargeError:
        return RequestTooLargeError(
            f"The request body is larger than this service accepts ({self.max_bytes} bytes).",
            # The rest of the body is not read, so the connection cannot carry another request.
            headers={"Connection": "close"},
        )

    def _counting(self, receive: Receive) -> Receive:
        received = 0

        async def counting_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise self._error()
            return message

        return counting_receive


def _content_length(scope: Scope) -> int | None:
    for name, value in scope["headers"]:
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None  # the server rejects a malformed length before the app sees it
    return None


async def _refuse(send: Send, error: RequestTooLargeError) -> None:
    body = orjson.dumps(error.body())
    await send(
        {
            "type": "http.response.start",
            "status": error.status_code,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                *((name.lower().encode(), value.encode()) for name, value in error.headers.items()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
