"""`POST /chat/completions`."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response

from chatservice.chat.respond import admitted_completion, allowed_route, respond
from chatservice.chat.schemas import ChatCompletion, ChatCompletionRequest
from chatservice.config import API_PREFIX
from chatservice.errors import InvalidRequestError
from chatservice.kit.api_docs import AUTH_ERRORS, AUTHENTICATED, error_responses
from chatservice.kit.deps import get_current_key, runtime_of
from chatservice.kit.request_body import body_openapi, parse_body
from chatservice.observability.context import current_record

router = APIRouter(prefix=API_PREFIX, tags=["chat"])


@router.post(
    "/chat/completions",
    response_model=ChatCompletion,
    responses={
        200: {
            "description": "A `chat.completion` object, or with `stream: true` server-sent "
            "events of `chat.completion.chunk` objects ending with `data: [DONE]`.",
            "content": {"text/event-stream": {}},
        },
        **error_responses(400, *AUTH_ERRORS, 403, 404, 429, 502, 504),
    },
    summary="Create a chat completion (OpenAI-compatible)",
    openapi_extra={**body_openapi(ChatCompletionRequest), **AUTHENTICATED},
)
async def create_chat_completion(request: Request) -> Response:
    # Nothing but the request is a parameter, so the route is a direct one (direct_routes.py):
    # FastAPI's body parameter and dependency solving cost more than this whole function.
    key = await get_current_key(request)
    body = await parse_body(request, ChatCompletionRequest)
    runtime = runtime_of(request)
    record = current_record()
    if record is not None:
        record.stream = body.stream
    if body.n is not None and body.n > runtime.settings.max_n:
        raise InvalidRequestError(
            f"Invalid value for 'n': at most {runtime.settings.max_n} choices per request.",
            param="n",
            code="invalid_value",
        )
    route = allowed_route(runtime, key, body.model)
    completion = await admitted_completion(
        runtime, key, route, runtime.routing.backend(route), body.upstream_payload()
    )
    include_usage = bool(body.stream_options and body.stream_options.include_usage)
    return await respond(request, completion, stream=body.stream, include_usage=include_usage)
