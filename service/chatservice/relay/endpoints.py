"""`POST /embeddings` and `POST /completions`: the same auth, routing (endpoints, retries,
fallbacks, queue), metrics and token accounting as chat; the answers are the upstream's, under
the public model name."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import orjson
from fastapi import APIRouter, Request
from fastapi.responses import Response, StreamingResponse

from chatservice.chat.endpoints import SSE_HEADERS, UPSTREAM_HEADER
from chatservice.config import API_PREFIX, ModelRoute
from chatservice.errors import ChatServiceError, ModelNotAllowedError
from chatservice.inference.base import CallStats, Payload, StreamEvent
from chatservice.keys.service import Principal
from chatservice.kit.api_docs import AUTH_ERRORS, AUTHENTICATED, error_responses
from chatservice.kit.deps import CurrentKey, runtime_of
from chatservice.kit.request_body import body_openapi, parse_body
from chatservice.observability import metrics
from chatservice.observability.context import current_record
from chatservice.relay.schemas import CompletionRequest, EmbeddingRequest
from chatservice.runtime import Runtime

router = APIRouter(prefix=API_PREFIX, tags=["relay"])

ERRORS = error_responses(400, *AUTH_ERRORS, 403, 404, 429, 502, 504)


@router.post(
    "/embeddings",
    responses=ERRORS,
    summary="Create embeddings (OpenAI-compatible, relayed to the model's upstream)",
    openapi_extra={**body_openapi(EmbeddingRequest), **AUTHENTICATED},
)
async def create_embeddings(request: Request, key: CurrentKey) -> Response:
    body = await parse_body(request, EmbeddingRequest)
    runtime = runtime_of(request)
    route = _route(runtime, key, body.model)
    stats = CallStats()
    result = await runtime.routing.relay(route).relay(
        route, "embeddings", body.upstream_payload(), stats
    )
    _count_tokens(route, result.get("usage"))
    return _json(result, stats)


@router.post(
    "/completions",
    responses=ERRORS,
    summary="Create a text completion (legacy OpenAI API, relayed to the model's upstream)",
    openapi_extra={**body_openapi(CompletionRequest), **AUTHENTICATED},
)
async def create_completion(request: Request, key: CurrentKey) -> Response:
    body = await parse_body(request, CompletionRequest)
    runtime = runtime_of(request)
    route = _route(runtime, key, body.model)
    stats = CallStats()
    backend = runtime.routing.relay(route)
    payload = body.upstream_payload()
    if not body.stream:
        result = await backend.relay(route, "completions", payload, stats)
        _count_tokens(route, result.get("usage"))
        return _json(result, stats)
    stream_options = payload.get("stream_options")
    include_usage = isinstance(stream_options, dict) and bool(stream_options.get("include_usage"))
    chunks = aiter(backend.stream(route, payload, stats, "completions"))
    # Errors before the first byte are plain HTTP errors (and may still fall back).
    first: list[StreamEvent] = await anext(chunks, [])
    headers = {**SSE_HEADERS, UPSTREAM_HEADER: stats.answered_by or route.name}
    return StreamingResponse(
        _sse(route, first, chunks, include_usage), media_type="text/event-stream", headers=headers
    )


async def _sse(
    route: ModelRoute,
    first: list[StreamEvent],
    chunks: AsyncIterator[list[StreamEvent]],
    include_usage: bool,
) -> AsyncIterator[bytes]:
    batch: list[StreamEvent] | None = first
    try:
        while batch is not None:
            parts = []
            for chunk, data in batch:
                usage = chunk.get("usage")
                if isinstance(usage, dict):
                    _count_tokens(route, usage)
                    if not include_usage and not chunk.get("choices"):
                        continue  # asked for by the gateway, not by the client
                parts.append(b"data: " + data + b"\n\n")
            if parts:
                yield b"".join(parts)
            batch = await anext(chunks, None)
    except ChatServiceError as exc:
        yield b"data: " + orjson.dumps(exc.body()) + b"\n\n"
        return
    finally:
        await chunks.aclose()  # type: ignore[attr-defined]
    yield b"data: [DONE]\n\n"


def _route(runtime: Runtime, key: Principal, model: str) -> ModelRoute:
    if not key.may_use(model):
        raise ModelNotAllowedError(f"This API key may not use the model '{model}'.", param="model")
    route = runtime.routing.get(model)
    record = current_record()
    if record is not None:
        record.model = route.name
    return route


def _count_tokens(route: ModelRoute, usage: Any) -> None:
    if not isinstance(usage, dict):
        return
    for kind, field in (("prompt", "prompt_tokens"), ("completion", "completion_tokens")):
        tokens = usage.get(field)
        if isinstance(tokens, int) and tokens > 0:
            metrics.child(metrics.TOKENS, route.name, kind).inc(tokens)


def _json(result: Payload, stats: CallStats) -> Response:
    headers = {UPSTREAM_HEADER: stats.answered_by} if stats.answered_by else None
    return Response(orjson.dumps(result), media_type="application/json", headers=headers)
