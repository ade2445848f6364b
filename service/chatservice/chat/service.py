"""Running one chat completion through its backend, with the metrics that describe it."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable
from typing import Any, TypeVar

import orjson
from starlette.requests import Request

from chatservice.config import ModelRoute
from chatservice.errors import (
    INTERNAL_ERROR_MESSAGE,
    ChatServiceError,
    RateLimitError,
    UpstreamClientError,
    UpstreamError,
    UpstreamTimeoutError,
    error_body,
)
from chatservice.inference.base import CallStats, ChatBackend, Payload
from chatservice.observability import metrics

log = logging.getLogger(__name__)

T = TypeVar("T")

_UPSTREAM_FAILURES = (UpstreamError, UpstreamTimeoutError, RateLimitError, UpstreamClientError)


class ClientDisconnectedError(Exception):
    """The client went away before the answer was ready; there is nobody to answer."""


async def cancel_on_disconnect(request: Request, work: Awaitable[T]) -> T:
    """Await `work`, cancelling it (and so the upstream call) if the client disconnects.

    `work` runs in the calling task; one watcher task cancels that task on disconnect.
    """
    worker = asyncio.current_task()
    assert worker is not None  # noqa: S101 - always called from a request's task
    disconnected = False

    async def watch() -> None:
        nonlocal disconnected
        while (await request.receive())["type"] != "http.disconnect":
            pass
        disconnected = True
        worker.cancel()

    watcher = asyncio.create_task(watch())
    try:
        return await work
    except asyncio.CancelledError:
        if disconnected:
            raise ClientDisconnectedError from None
        raise
    finally:
        watcher.cancel()


class Completion:
    """One chat completion's bookkeeping: timings, outcome and token counts."""

    def __init__(self, route: ModelRoute, backend: ChatBackend, stream: bool) -> None:
        self.route = route
        self.backend = backend
        self.stats = CallStats()
        self.started = time.perf_counter()
        self._stream = "true" if stream else "false"

    async def run(self, payload: Payload) -> Payload:
        try:
            result = await self.backend.complete(self.route, payload, self.stats)
        except BaseException as exc:
            self._finish(_outcome(exc), exc)
            raise
        self._count_usage(result.get("usage"))
        self._finish("success")
        return result

    async def open_stream(self, payload: Payload, include_usage: bool) -> AsyncIterator[bytes]:
        """Start the stream and wait for its first chunk, so that failures before the first
        byte still get a proper HTTP status; the rest is streamed by the returned iterator."""
        chunks = aiter(self.backend.stream(self.route, payload, self.stats))
        try:
            first = await anext(chunks)
        except BaseException as exc:
            self._finish(_outcome(exc), exc)
            raise
        metrics.child(metrics.TIME_TO_FIRST_TOKEN, self.route.name).observe(
            time.perf_counter() - self.started
        )
        return self._events(first, chunks, include_usage)

    async def _events(
        self, first: Payload, chunks: AsyncIterator[Payload], include_usage: bool
    ) -> AsyncIterator[bytes]:
        outcome = "success"
        error: BaseException | None = None
        try:
            chunk: Payload | None = first
            while chunk is not None:
                usage = chunk.get("usage")
                if usage:
                    self._count_usage(usage)
                if include_usage or chunk.get("choices") or not usage:
                    if not include_usage:
                        chunk.pop("usage", None)
                    yield _event(chunk)
                chunk = await anext(chunks, None)
            yield b"data: [DONE]\n\n"
        except ChatServiceError as exc:
            outcome, error = _outcome(exc), exc
            # Headers are gone already: the error travels as one event, then the stream ends.
            yield _event(exc.body())
        except Exception as exc:
            outcome, error = "error", exc
            log.exception("stream failed", extra={"model": self.route.name})
            yield _event(error_body(INTERNAL_ERROR_MESSAGE, "server_error"))
        except BaseException as exc:  # cancelled: the client went away mid-stream
            outcome, error = _outcome(exc), exc
            raise
        finally:
            await _close(chunks)
            self._finish(outcome, error)

    def _count_usage(self, usage: Any) -> None:
        if not isinstance(usage, dict):
            return
        for kind in ("prompt", "completion"):
            tokens = usage.get(f"{kind}_tokens")
            if isinstance(tokens, int) and tokens > 0:
                metrics.child(metrics.TOKENS, self.route.name, kind).inc(tokens)

    def _finish(self, outcome: str, error: BaseException | None = None) -> None:
        model = self.route.name
        metrics.child(metrics.CHAT_COMPLETIONS, model, self._stream, outcome).inc()
        if isinstance(error, _UPSTREAM_FAILURES):
            metrics.child(metrics.UPSTREAM_ERRORS, model, type(error).__name__).inc()
        overhead = time.perf_counter() - self.started - self.stats.upstream_seconds
        if self.route.backend != "echo":  # echo has no upstream: all of it is "overhead"
            metrics.child(metrics.GATEWAY_OVERHEAD, model).observe(max(overhead, 0.0))


def _outcome(exc: BaseException) -> str:
    if isinstance(exc, asyncio.CancelledError | ClientDisconnectedError | GeneratorExit):
        return "cancelled"
    if isinstance(exc, ChatServiceError):
        if exc.status_code == 429:
            return "upstream_rate_limited"
        if exc.status_code == 504:
            return "timeout"
        return "client_error" if exc.status_code < 500 else "upstream_error"
    return "error"


def _event(payload: Payload) -> bytes:
    return b"data: " + orjson.dumps(payload) + b"\n\n"


async def _close(chunks: AsyncIterator[Payload]) -> None:
    aclose = getattr(chunks, "aclose", None)
    if aclose is not None:
        await aclose()
