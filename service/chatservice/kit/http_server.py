"""The gunicorn worker: uvicorn's, with a bound on request heads (size and time to arrive).

uvicorn's protocols bound neither: httptools buffers a header of any size, h11's only knob is
its incomplete-event size, and neither times a connection before its first request is
complete (the keep-alive timer starts only after a response). So a client could hold a
worker's memory with huge headers, or its connections with heads that never end.
"""

from __future__ import annotations

import asyncio
from functools import partial
from typing import Any

import orjson
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn_worker import UvicornWorker

from chatservice.config import Settings
from chatservice.errors import error_body


class BoundedHeadProtocol(HttpToolsProtocol):
    """httptools, answering 431 once a request head outgrows `max_header_bytes` and closing
    a connection whose head has not arrived within `header_timeout` seconds."""

    def __init__(
        self, *args: Any, max_header_bytes: int, header_timeout: float, **kwargs: Any
    ) -> None:
        super().__init__(*args, **kwargs)
        self._max_header_bytes = max_header_bytes
        self._header_timeout = header_timeout
        self._in_head = True
        self._head_bytes = 0
        self._head_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)  # type: ignore[arg-type]
        self._arm_head_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_head_timer()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if not self._in_head or self.transport.is_closing():
            return
        # Counted after parsing, so the chunk that completes a head (and may carry body
        # bytes) is not held against it. Memory stays within the limit plus one read.
        self._head_bytes += len(data)
        if self._head_bytes > self._max_header_bytes:
            self._refuse(
                b"431 Request Header Fields Too Large",
                "The request line and headers are larger than this service accepts "
                f"({self._max_header_bytes} bytes).",
                "request_header_fields_too_large",
            )

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._in_head = True
        self._head_bytes = 0
        self._arm_head_timer()

    def on_headers_complete(self) -> None:
        self._in_head = False
        self._cancel_head_timer()
        super().on_headers_complete()

    def _arm_head_timer(self) -> None:
        if self._head_timer is None:
            self._head_timer = self.loop.call_later(self._header_timeout, self._head_timed_out)

    def _cancel_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_timed_out(self) -> None:
        self._head_timer = None
        if self.transport.is_closing():
            return
        if self.cycle is not None and not self.cycle.response_complete:
            # A pipelined head is late while this connection's response is still going:
            # the response may finish; the head gets a fresh period after it.
            self._arm_head_timer()
            return
        self._refuse(
            b"408 Request Timeout",
            f"The request headers did not arrive within {self._header_timeout:g} seconds.",
            "request_timeout",
        )

    def _refuse(self, status: bytes, message: str, code: str) -> None:
        self._cancel_head_timer()
        body = orjson.dumps(error_body(message, "invalid_request_error", code=code))
        self.transport.write(
            b"HTTP/1.1 " + status + b"\r\ncontent-type: application/json\r\n"
            b"content-length: " + str(len(body)).encode() + b"\r\nconnection: close\r\n\r\n" + body
        )
        self.transport.close()


class ChatServiceWorker(UvicornWorker):  # type: ignore[misc]
    """`uvicorn_worker.UvicornWorker` with `BoundedHeadProtocol`, limits from the settings."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        settings = Settings()
        self.CONFIG_KWARGS = {
            **UvicornWorker.CONFIG_KWARGS,
            "http": partial(
                BoundedHeadProtocol,
                max_header_bytes=settings.max_header_bytes,
                header_timeout=settings.header_timeout,
            ),
        }
        super().__init__(*args, **kwargs)
