"""The `openai` backend: any OpenAI-compatible upstream over a pooled aiohttp session.

Timeouts are separate for connecting, the first byte (response headers), the gap between
stream chunks and the whole call. Retries happen only before the first byte, on errors that
mean the upstream did not start the work (connect errors, 429, 502, 503), so a client never
sees a partial answer followed by a second one.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import orjson

from chatservice.config import ModelRoute, Settings
from chatservice.errors import (
    ChatServiceError,
    RateLimitError,
    UpstreamClientError,
    UpstreamError,
    UpstreamTimeoutError,
)
from chatservice.inference.base import CallStats, Payload

log = logging.getLogger(__name__)

RETRYABLE_STATUSES = frozenset({429, 502, 503})
MAX_RETRY_AFTER = 5.0


class OpenAIBackend:
    def __init__(self, session: aiohttp.ClientSession, settings: Settings) -> None:
        self._session = session
        self._settings = settings
        # aiohttp only bounds connecting (first-byte and total limits are asyncio timeouts
        # below); one object serves every request.
        self._connect_timeout = aiohttp.ClientTimeout(
            total=None, sock_connect=settings.upstream_connect_timeout
        )

    async def complete(self, route: ModelRoute, payload: Payload, stats: CallStats) -> Payload:
        deadline = time.monotonic() + self._settings.upstream_total_timeout
        response = await self._send(route, payload, stats, deadline)
        started = time.perf_counter()
        try:
            async with asyncio.timeout(_remaining(deadline)):
                body = await response.read()
        except TimeoutError:
            raise UpstreamTimeoutError(f"The upstream for `{route.name}` timed out.") from None
        except aiohttp.ClientError as exc:
            raise _broken(route, exc) from exc
        finally:
            stats.upstream_seconds += time.perf_counter() - started
            response.release()
        try:
            result: Payload = orjson.loads(body)
        except ValueError:
            raise UpstreamError(f"The upstream for `{route.name}` sent invalid JSON.") from None
        result["model"] = route.name
        return result

    async def stream(
        self, route: ModelRoute, payload: Payload, stats: CallStats
    ) -> AsyncIterator[Payload]:
        deadline = time.monotonic() + self._settings.upstream_total_timeout
        # Ask for usage even when the client did not, so tokens are always counted; the
        # chat service drops that chunk again for clients that did not ask.
        upstream_payload = {**payload, "stream": True, "stream_options": {"include_usage": True}}
        response = await self._send(route, upstream_payload, stats, deadline)
        finished = False
        try:
            while True:
                started = time.perf_counter()
                try:
                    timeout = min(self._settings.upstream_chunk_timeout, _remaining(deadline))
                    async with asyncio.timeout(timeout):
                        line = await response.content.readline()
                except TimeoutError:
                    raise UpstreamTimeoutError(
                        f"The upstream for `{route.name}` stopped sending."
                    ) from None
                except aiohttp.ClientError as exc:
                    raise _broken(route, exc) from exc
                finally:
                    stats.upstream_seconds += time.perf_counter() - started
                if not line:
                    raise UpstreamError(f"The upstream for `{route.name}` ended the stream early.")
                data = _sse_data(line)
                if data is None:
                    continue
                if data == b"[DONE]":
                    finished = True
                    return
                chunk = _parse_chunk(route, data)
                chunk["model"] = route.name
                yield chunk
        finally:
            if finished:
                response.release()
            else:
                # Closing (not releasing) drops the connection, which is how the upstream
                # learns that nobody is reading any more and stops generating.
                response.close()

    async def check(self, route: ModelRoute) -> None:
        timeout = aiohttp.ClientTimeout(total=self._settings.health_backend_timeout)
        try:
            async with self._session.get(
                _url(route, "models"), headers=_headers(route), timeout=timeout
            ) as response:
                if response.status >= 500:
                    raise UpstreamError(f"upstream answered {response.status}")
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise UpstreamError(f"upstream unreachable: {type(exc).__name__}") from exc

    async def _send(
        self, route: ModelRoute, payload: Payload, stats: CallStats, deadline: float
    ) -> aiohttp.ClientResponse:
        """POST until the upstream answers with something other than a retryable error."""
        body = {**payload, "model": route.upstream_model or route.name}
        retries = self._settings.upstream_max_retries
        for attempt in range(retries + 1):
            stats.attempts += 1
            started = time.perf_counter()
            try:
                timeout = min(self._settings.upstream_first_byte_timeout, _remaining(deadline))
                async with asyncio.timeout(timeout):
                    response = await self._session.post(
                        _url(route, "chat/completions"),
                        data=orjson.dumps(body),
                        headers={**_headers(route), "Content-Type": "application/json"},
                        timeout=self._connect_timeout,
                    )
            except TimeoutError:
                raise UpstreamTimeoutError(
                    f"The upstream for `{route.name}` did not answer in time."
                ) from None
            except aiohttp.ClientConnectionError as exc:
                if attempt < retries and not isinstance(exc, aiohttp.ServerDisconnectedError):
                    await self._backoff(attempt, None, deadline)
                    continue
                raise _broken(route, exc) from exc
            finally:
                stats.upstream_seconds += time.perf_counter() - started
            if response.status < 400:
                return response
            if response.status in RETRYABLE_STATUSES and attempt < retries:
                retry_after = response.headers.get("retry-after")
                response.release()
                await self._backoff(attempt, retry_after, deadline)
                continue
            raise await _status_error(route, response)
        raise AssertionError("unreachable: the last attempt returns or raises")

    async def _backoff(self, attempt: int, retry_after: str | None, deadline: float) -> None:
        delay = self._settings.upstream_retry_backoff * (2**attempt) * (0.5 + random.random())  # noqa: S311
        if retry_after is not None:
            try:
                delay = max(delay, min(float(retry_after), MAX_RETRY_AFTER))
            except ValueError:
                pass
        if delay >= _remaining(deadline):
            raise UpstreamTimeoutError("The upstream kept failing until the deadline.")
        await asyncio.sleep(delay)


def _url(route: ModelRoute, path: str) -> str:
    base_url = route.base_url or ""  # never empty here: the settings require it for openai
    return base_url.rstrip("/") + "/" + path


def _headers(route: ModelRoute) -> dict[str, str]:
    key = route.upstream_api_key()
    return {"Authorization": f"Bearer {key}"} if key else {}


def _remaining(deadline: float) -> float:
    return max(deadline - time.monotonic(), 0.001)


def _sse_data(line: bytes) -> bytes | None:
    line = line.strip()
    if not line.startswith(b"data:"):
        return None  # blank separators, comments (": ping") and other SSE fields
    return line[5:].strip()


def _parse_chunk(route: ModelRoute, data: bytes) -> Payload:
    try:
        chunk: Any = orjson.loads(data)
    except ValueError:
        raise UpstreamError(f"The upstream for `{route.name}` sent an invalid chunk.") from None
    if not isinstance(chunk, dict):
        raise UpstreamError(f"The upstream for `{route.name}` sent an invalid chunk.")
    if "error" in chunk:
        message = _error_message(chunk) or "The upstream reported an error mid-stream."
        raise UpstreamError(message)
    return chunk


def _broken(route: ModelRoute, exc: Exception) -> UpstreamError:
    log.warning(
        "upstream connection failed",
        extra={"model": route.name, "error": type(exc).__name__, "detail": str(exc)},
    )
    return UpstreamError(f"Could not reach the upstream for `{route.name}`.")


async def _status_error(route: ModelRoute, response: aiohttp.ClientResponse) -> ChatServiceError:
    status = response.status
    try:
        body: Any = orjson.loads(await response.read())
    except (ValueError, aiohttp.ClientError):
        body = None
    finally:
        response.release()
    message = _error_message(body)
    if status == 429:
        return RateLimitError(message or f"The upstream for `{route.name}` is rate limited.")
    if status >= 500:
        log.warning("upstream error", extra={"model": route.name, "status": status})
        return UpstreamError(f"The upstream for `{route.name}` failed with status {status}.")
    error = body.get("error") if isinstance(body, dict) else None
    details = error if isinstance(error, dict) else {}
    return UpstreamClientError(
        status,
        message or f"The upstream rejected the request with status {status}.",
        param=details.get("param"),
        code=details.get("code"),
    )


def _error_message(body: Any) -> str | None:
    if isinstance(body, dict):
        error = body.get("error")
        if isinstance(error, dict) and isinstance(error.get("message"), str):
            return str(error["message"])
        if isinstance(error, str):
            return error
    return None
