"""`POST /embeddings` and `POST /completions` (legacy): the same auth, routing (endpoints,
retries, fallbacks, queue), metrics and accounting (admission, ledger, settlement) as chat;
the answers are the upstream's, under the public model name."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response

from chatservice.chat.respond import admitted_completion, allowed_route, respond
from chatservice.config import API_PREFIX
from chatservice.inference.base import Api, Payload
from chatservice.keys.service import Principal
from chatservice.kit.api_docs import AUTH_ERRORS, AUTHENTICATED, error_responses
from chatservice.kit.deps import get_current_key, runtime_of
from chatservice.kit.request_body import body_openapi, parse_body
from chatservice.observability.context import current_record
from chatservice.relay.backend import RelayedApi
from chatservice.relay.schemas import CompletionRequest, EmbeddingRequest

router = APIRouter(prefix=API_PREFIX, tags=["relay"])

ERRORS = error_responses(400, *AUTH_ERRORS, 403, 404, 429, 502, 504)


@router.post(
    "/embeddings",
    responses=ERRORS,
    summary="Create embeddings (OpenAI-compatible, relayed to the model's upstream)",
    openapi_extra={**body_openapi(EmbeddingRequest), **AUTHENTICATED},
)
async def create_embeddings(request: Request) -> Response:
    key = await get_current_key(request)
    body = await parse_body(request, EmbeddingRequest)
    return await _relay(request, key, "embeddings", body.model, body.upstream_payload())


@router.post(
    "/completions",
    responses=ERRORS,
    summary="Create a text completion (legacy OpenAI API, relayed to the model's upstream)",
    openapi_extra={**body_openapi(CompletionRequest), **AUTHENTICATED},
)
async def create_completion(request: Request) -> Response:
    key = await get_current_key(request)
    body = await parse_body(request, CompletionRequest)
    return await _relay(request, key, "completions", body.model, body.upstream_payload())


async def _relay(
    request: Request, key: Principal, api: Api, model: str, payload: Payload
) -> Response:
    runtime = runtime_of(request)
    route = allowed_route(runtime, key, model)
    stream = bool(payload.get("stream"))
    record = current_record()
    if record is not None:
        record.stream = stream
    # Before admission: a model without this API takes nothing from the key's limits.
    backend = RelayedApi(runtime.routing.relay(route), api)
    completion = await admitted_completion(runtime, key, route, backend, payload, api)
    stream_options = payload.get("stream_options")
    include_usage = isinstance(stream_options, dict) and bool(stream_options.get("include_usage"))
    return await respond(request, completion, stream=stream, include_usage=include_usage)
