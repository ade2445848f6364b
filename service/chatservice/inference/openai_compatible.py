"""The `openai` backend: any OpenAI-compatible upstream over pooled keep-alive connections.

Timeouts are separate for connecting, the first byte (response headers), any silence while
the body or stream arrives, and the whole call. Retries happen only before the first byte, on
errors that mean the upstream did not start the work (connect errors, 429, 502, 503), so a
client never sees a partial answer followed by a second one.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import orjson

from chatservice.config import ModelRoute, Settings
from chatservice.errors import (
    ChatServiceError,
    UpstreamError,
    UpstreamInvalidResponseError,
    UpstreamRateLimitError,
    UpstreamTimeoutError,
    UpstreamUnreachableError,
)
from chatservice.inference.base import HEALTHY, BackendHealth, CallStats, Payload, StreamEvent
from chatservice.inference.endpoint_pool import Endpoint, EndpointPool
from chatservice.inference.sse import DataFields
from chatservice.inference.upstream_errors import (
    LOGGED_BODY_CHARS,
    broken,
    error_message,
    status_error,
)
from chatservice.inference.upstream_health import UpstreamChecks
from chatservice.kit.http_client import (
    ConnectError,
    HTTPClient,
    HTTPClientError,
    Response,
)
from chatservice.kit.read_timer import ReadTimer

log = logging.getLogger("chatservice.upstream")

RETRYABLE_STATUSES = frozenset({429, 502, 503})
TOKEN_LIMIT_FIELDS = ("max_completion_tokens", "max_tokens")
# The most of a whole (non-streaming) answer read: generous for embeddings (2,048 inputs of
# 3,072 dimensions are about 130 MB of JSON), a bound so that a broken upstream cannot fill a
# worker's memory and take its other requests down with it. (A stream's lines: sse.py.)
MAX_BODY_BYTES = 256 * 1024 * 1024


class OpenAIBackend:
    def __init__(self, http: HTTPClient, settings: Settings) -> None:
        self._http = http
        self._settings = settings
        self._pools = {
            route.name: EndpointPool(route, settings)
            for route in settings.models
            if route.backend == "openai"
        }
        self._checks = UpstreamChecks(
            http, settings.health_backend_timeout, settings.health_backend_cache_ttl
        )

    async def complete(self, route: ModelRoute, payload: Payload, stats: CallStats) -> Payload:
        sent, body = await self._answer(route, payload, stats, "chat/completions")
        return _completion(sent.route, body, stats)

    async def _read_body(self, route: ModelRoute, response: Response, deadline: float) -> bytes:
        """The whole body, failing when the upstream goes silent for the chunk timeout or
        sends more than `MAX_BODY_BYTES`."""
        parts: list[bytes] = []
        size = 0
        timer = ReadTimer(self._settings.upstream_chunk_timeout, deadline)
        try:
            while True:
                part = await self._read(
                    route, timer, response.readany, "sending its answer", mid_stream=False
                )
                if not part:
                    return b"".join(parts)
                size += len(part)
                if size > MAX_BODY_BYTES:
                    raise UpstreamInvalidResponseError(
                        f"The upstream for `{route.name}` sent an answer larger than "
                        f"{MAX_BODY_BYTES} bytes."
                    )
                parts.append(part)
        finally:
            timer.close()

    async def _read(
        self,
        route: ModelRoute,
        timer: ReadTimer,
        read: Callable[[], Awaitable[bytes]],
        stopped: str,
        *,
        mid_stream: bool,
    ) -> bytes:
        """One read of the upstream's body, failing when it goes silent for the chunk timeout
        (or the total deadline comes first)."""
        try:
            return await timer.read(read)
        except TimeoutError:
            log.warning(
                f"upstream stopped {stopped}",
                extra={"model": route.name, "outcome": UpstreamTimeoutError.outcome},
            )
            raise UpstreamTimeoutError(
                f"The upstream for `{route.name}` stopped {stopped}."
            ) from None
        except HTTPClientError as exc:
            raise broken(route, exc, mid_stream=mid_stream) from exc

    async def stream(
        self,
        route: ModelRoute,
        payload: Payload,
        stats: CallStats,
        path: str = "chat/completions",
    ) -> AsyncIterator[list[StreamEvent]]:
        deadline = time.monotonic() + self._settings.upstream_total_timeout
        # Ask for usage even when the client did not, so tokens are always counted; the
        # chat service drops that chunk again for clients that did not ask.
        upstream_payload = {**payload, "stream": True, "stream_options": {"include_usage": True}}
        sent = await self._send(route, upstream_payload, stats, deadline, path)
        # From here on the answer is the one of this endpoint (maybe of a fallback model):
        # nothing is retried once a byte may have reached the client.
        route, response = sent.route, sent.response
        fields = DataFields(route.name)
        timer = ReadTimer(self._settings.upstream_chunk_timeout, deadline)
        finished = False
        try:
            while not finished:
                # One read takes whatever the upstream sent since the last: a timeout and a
                # write to the client per read, not per event.
                started = time.perf_counter()
                try:
                    data = await self._read(
                        route, timer, response.readany, "sending", mid_stream=True
                    )
                finally:
                    stats.upstream_seconds += time.perf_counter() - started
                if data:
                    batch = fields.feed(data)
                else:
                    # Without `[DONE]`: whether the answer is whole, the finish reasons tell
                    # (the chat service checks them).
                    finished = True
                    batch = fields.end()
                events: list[StreamEvent] = []
                failure: UpstreamError | None = None
                try:
                    for field in batch:
                        if field == b"[DONE]":
                            finished = True
                            break
                        events.append(_event(route, field, stats))
                except UpstreamError as exc:
                    failure = exc
                if events:
                    yield events  # what came before a bad chunk still reaches the client
                if failure is not None:
                    raise failure
        finally:
            timer.close()
            if finished:
                response.release()
            else:
                # Closing (not releasing) drops the connection, which is how the upstream
                # learns that nobody is reading any more and stops generating.
                response.close()
            sent.pool.release(sent.endpoint)

    async def check(self, route: ModelRoute) -> BackendHealth:
        """Every endpoint's `GET /models`: ok if all answer, degraded if only some do."""
        pool = self._pools[route.name]
        if not pool.endpoints:
            return BackendHealth("unavailable", "no endpoint: its DNS name resolved to none yet")
        results = await asyncio.gather(
            *(
                self._checks.check(
                    route, e.url + "/models", _endpoint_headers(route, e), e.server_hostname
                )
                for e in pool.endpoints
            )
        )
        failed = [r for r in results if r.status != "ok"]
        if not failed:
            return HEALTHY
        if len(failed) < len(results):
            return BackendHealth(
                "degraded", f"{len(failed)} of {len(results)} endpoints fail: {failed[0].error}"
            )
        return failed[0]

    def pool(self, route: ModelRoute) -> EndpointPool:
        return self._pools[route.name]

    @property
    def pools(self) -> list[EndpointPool]:
        return list(self._pools.values())

    async def relay(
        self, route: ModelRoute, path: str, payload: Payload, stats: CallStats
    ) -> Payload:
        """A non-streaming call to another OpenAI endpoint (`embeddings`, `completions`): the
        same endpoints, retries and fallbacks as chat; the answer under the public name."""
        sent, body = await self._answer(route, payload, stats, path)
        try:
            result: Any = orjson.loads(body)
        except ValueError:
            result = None
        if not isinstance(result, dict) or "error" in result:
            log.warning(
                "upstream answered something that is not an answer",
                extra={"model": route.name, "path": path, "upstream_body": _logged(body)},
            )
            raise UpstreamInvalidResponseError(
                f"The upstream for `{sent.route.name}` answered with something that is not a "
                f"`{path}` answer."
            )
        stats.upstream_model = result.get("model")
        result["model"] = sent.route.name
        return result

    async def _answer(
        self, route: ModelRoute, payload: Payload, stats: CallStats, path: str
    ) -> tuple[_Sent, bytes]:
        """A whole (non-streaming) answer's body, from whichever endpoint or fallback took it."""
        deadline = time.monotonic() + self._settings.upstream_total_timeout
        sent = await self._send(route, payload, stats, deadline, path)
        started = time.perf_counter()
        try:
            body = await self._read_body(sent.route, sent.response, deadline)
        finally:
            stats.upstream_seconds += time.perf_counter() - started
            sent.response.release()
            sent.pool.release(sent.endpoint)
        return sent, body

    async def _send(
        self,
        route: ModelRoute,
        payload: Payload,
        stats: CallStats,
        deadline: float,
        path: str = "chat/completions",
    ) -> _Sent:
        """POST to the route's endpoints, then to its fallbacks' in order, until one answers
        with something other than a retryable error, all before `deadline`."""
        failure: ChatServiceError | None = None
        for candidate in (route, *(self._settings.routes[name] for name in route.fallbacks)):
            try:
                return await self._send_to_route(candidate, payload, stats, deadline, path)
            except (UpstreamUnreachableError, UpstreamRateLimitError, _Retryable) as exc:
                failure = exc.error if isinstance(exc, _Retryable) else exc
                if time.monotonic() >= deadline:
                    break
        assert failure is not None  # noqa: S101 - the chain has at least the route itself
        raise failure

    async def _send_to_route(
        self, route: ModelRoute, payload: Payload, stats: CallStats, deadline: float, path: str
    ) -> _Sent:
        pool = self._pools[route.name]
        body = orjson.dumps(_upstream_body(route, payload))
        retries = self._settings.upstream_max_retries
        tried: set[Endpoint] = set()
        failure: ChatServiceError | None = None
        for attempt in range(retries + 1):
            endpoint = await self._pick(pool, tried, deadline)
            if endpoint is None:
                # Nothing new to try: an endpoint tried already, after a pause.
                if failure is not None and not await self._pause(attempt - 1, deadline):
                    break  # no time left for this model: maybe for a fallback's
                endpoint = await self._pick(pool, set(), deadline)
            if endpoint is None:
                if failure is not None:
                    break
                raise UpstreamUnreachableError(
                    f"No endpoint of the upstream for `{route.name}` is available now.",
                    code="no_available_endpoint",
                    headers={"Retry-After": str(max(1, round(pool.next_recovery())))},
                )
            tried.add(endpoint)
            stats.attempts += 1
            started = time.perf_counter()
            try:
                timeout = min(self._settings.upstream_first_byte_timeout, _remaining(deadline))
                async with asyncio.timeout(timeout):
                    response = await self._http.request(
                        "POST",
                        endpoint.url + "/" + path,
                        body=body,
                        headers={
                            **_endpoint_headers(route, endpoint),
                            "Content-Type": "application/json",
                        },
                        server_hostname=endpoint.server_hostname,
                    )
            except TimeoutError:
                pool.release(endpoint)
                pool.failed(endpoint, "timeout")
                log.warning(
                    "upstream did not answer in time",
                    extra={"model": route.name, "outcome": UpstreamTimeoutError.outcome},
                )
                raise UpstreamTimeoutError(
                    f"The upstream for `{route.name}` did not answer in time."
                ) from None
            except HTTPClientError as exc:
                pool.release(endpoint)
                pool.failed(endpoint, type(exc).__name__)
                failure = broken(route, exc)
                if not isinstance(exc, ConnectError):
                    raise failure from exc  # the request went out, it may have started the work
                continue
            except BaseException:
                pool.release(endpoint)
                raise
            finally:
                stats.upstream_seconds += time.perf_counter() - started
            if response.status < 400:
                pool.succeeded(endpoint)
                stats.answered_by = endpoint.label
                return _Sent(response, route, pool, endpoint)
            pool.release(endpoint)
            if response.status == 429:
                pool.rate_limited(endpoint, response.headers.get("retry-after"))
            elif response.status >= 500:
                pool.failed(endpoint, str(response.status))
            if response.status in RETRYABLE_STATUSES:
                failure = await status_error(route, response, self._settings.upstream_chunk_timeout)
                continue
            raise await status_error(route, response, self._settings.upstream_chunk_timeout)
        assert failure is not None  # noqa: S101 - the loop ran and failed at least once
        raise _Retryable(failure)

    async def _pick(
        self, pool: EndpointPool, tried: set[Endpoint], deadline: float
    ) -> Endpoint | None:
        endpoint = pool.pick(tried)
        while endpoint is None and pool.all_capped(tried):
            await pool.wait_for_slot(deadline)
            endpoint = pool.pick(tried)
        return endpoint

    async def _pause(self, attempt: int, deadline: float) -> bool:
        """Back off before trying an endpoint again; False if the deadline comes first."""
        delay = self._settings.upstream_retry_backoff * (2**attempt) * (0.5 + random.random())  # noqa: S311
        if delay >= _remaining(deadline):
            return False
        await asyncio.sleep(delay)
        return True


@dataclass(slots=True)
class _Sent:
    """An upstream's answer that started (headers < 400) and the endpoint it holds."""

    response: Response
    route: ModelRoute
    pool: EndpointPool
    endpoint: Endpoint


class _Retryable(Exception):
    """A route's endpoints all failed in a way a fallback model may not."""

    def __init__(self, error: ChatServiceError) -> None:
        super().__init__(error.message)
        self.error = error


def _upstream_body(route: ModelRoute, payload: Payload) -> Payload:
    body = {**payload, "model": route.upstream_model or route.name}
    # Upstreams honour one name for the output limit and may ignore the other (llama.cpp
    # ignores `max_completion_tokens`): send the client's limit under the route's name only.
    limits = [body.pop(name) for name in TOKEN_LIMIT_FIELDS if name in body]
    if limits:
        body[route.max_tokens_field] = limits[0]
    return body


def _completion(route: ModelRoute, body: bytes, stats: CallStats) -> Payload:
    """The upstream's answer if it is a chat completion; anything else is its failure."""
    try:
        result: Any = orjson.loads(body)
    except ValueError:
        result = None
    if isinstance(result, dict) and "error" in result:
        log.warning(
            "upstream answered 2xx with an error",
            extra={"model": route.name, "upstream_body": _logged(body)},
        )
        raise UpstreamError(
            f"The upstream for `{route.name}` reported an error instead of an answer.",
            code="upstream_error_response",
        )
    if not _is_chat_completion(result):
        log.warning(
            "upstream answered something that is not a chat completion",
            extra={"model": route.name, "upstream_body": _logged(body)},
        )
        raise UpstreamInvalidResponseError(
            f"The upstream for `{route.name}` answered with something that is not a chat "
            "completion."
        )
    stats.upstream_model = result.get("model")
    result["model"] = route.name
    return dict(result)


def _logged(body: bytes) -> str:
    return body[:LOGGED_BODY_CHARS].decode(errors="replace")


def _is_chat_completion(result: Any) -> bool:
    if not isinstance(result, dict):
        return False
    choices = result.get("choices")
    return (
        isinstance(choices, list)
        and bool(choices)
        and all(isinstance(c, dict) and isinstance(c.get("message"), dict) for c in choices)
        and result.get("object", "chat.completion") == "chat.completion"
    )


def _endpoint_headers(route: ModelRoute, endpoint: Endpoint) -> dict[str, str]:
    key = endpoint.key(route)
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    if endpoint.host_header is not None:
        headers["Host"] = endpoint.host_header
    return headers


def _remaining(deadline: float) -> float:
    return max(deadline - time.monotonic(), 0.001)


def _event(route: ModelRoute, data: bytes, stats: CallStats) -> StreamEvent:
    """The chunk under the route's public name; its bytes are re-encoded only if that changed
    them."""
    chunk = _parse_chunk(route, data)
    model = chunk.get("model")
    if stats.upstream_model is None:
        stats.upstream_model = model
    if model != route.name:
        chunk["model"] = route.name
        data = orjson.dumps(chunk)
    return chunk, data


def _parse_chunk(route: ModelRoute, data: bytes) -> Payload:
    try:
        chunk: Any = orjson.loads(data)
    except ValueError:
        chunk = None
    if not isinstance(chunk, dict):
        raise UpstreamInvalidResponseError(
            f"The upstream for `{route.name}` sent an invalid chunk."
        )
    if "error" in chunk:
        # Its text can carry what the client must not see; the log keeps it.
        log.warning(
            "upstream reported an error mid-stream",
            extra={
                "model": route.name,
                "upstream_error": error_message(chunk) or str(chunk)[:LOGGED_BODY_CHARS],
            },
        )
        raise UpstreamError(
            f"The upstream for `{route.name}` reported an error mid-stream: the answer is "
            "incomplete.",
            code="upstream_stream_error",
        )
    return chunk
