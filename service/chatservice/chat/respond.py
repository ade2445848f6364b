"""What the chat and the relayed endpoints (legacy completions, embeddings) share: the route a
key may use, the admitted completion, and its HTTP response: the JSON answer or the event
stream, with the admission's rate-limit headers on success and on errors, and 499 when the
client left before the answer."""

from __future__ import annotations

import orjson
from fastapi.responses import JSONResponse, Response
from starlette.requests import Request

from chatservice.chat.service import Completion
from chatservice.config import ModelRoute
from chatservice.errors import ChatServiceError, ModelNotAllowedError, error_body
from chatservice.inference.base import Answering, Api, Payload
from chatservice.keys.service import Principal
from chatservice.kit.disconnect import (
    ClientDisconnectedError,
    DisconnectWatch,
    cancel_on_disconnect,
)
from chatservice.kit.event_stream import EventStreamResponse
from chatservice.observability.context import current_record
from chatservice.runtime import Runtime

UPSTREAM_HEADER = "x-chatservice-upstream"
SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


def allowed_route(runtime: Runtime, key: Principal, model: str) -> ModelRoute:
    """The route of `model`, if `key` may use it; the request's record names it."""
    if not key.may_use(model):
        raise ModelNotAllowedError(f"This API key may not use the model '{model}'.", param="model")
    route = runtime.routing.get(model)
    record = current_record()
    if record is not None:
        record.model = route.name
    return route


async def admitted_completion(
    runtime: Runtime,
    key: Principal,
    route: ModelRoute,
    backend: Answering,
    payload: Payload,
    api: Api = "chat/completions",
) -> Completion:
    """A completion of `payload` on `route`, once admission (budgets, rate limits) let it in."""
    admission = await runtime.accounting.admit(key, route, payload, api)
    return Completion(
        route,
        backend,
        payload,
        runtime.streams,
        runtime.tracer,
        runtime.token_counters.get(route.name),
        admission,
        api,
        runtime.settings.capture_message_content,
    )


async def respond(
    request: Request, completion: Completion, *, stream: bool, include_usage: bool
) -> Response:
    admission = completion.admission
    rate_limits = admission.headers if admission is not None else {}
    try:
        if stream:
            return await _event_stream(request, completion, include_usage, rate_limits)
        result = await cancel_on_disconnect(request.receive, completion.run())
    except ClientDisconnectedError:
        # Nobody is listening; the status only reaches the access log and metrics.
        return JSONResponse(error_body("Client closed the request.", "invalid_request_error"), 499)
    except ChatServiceError as exc:
        exc.headers = {**rate_limits, **exc.headers}
        raise
    return Response(
        orjson.dumps(result),
        media_type="application/json",
        headers={**rate_limits, **_upstream_header(completion)},
    )


async def _event_stream(
    request: Request, completion: Completion, include_usage: bool, rate_limits: dict[str, str]
) -> Response:
    """The stream, once its first chunk came; the watch started here goes on watching for the
    client's disconnect while the response is written."""
    watch = DisconnectWatch(request.receive)
    try:
        events = await watch.guard(completion.open_stream(include_usage))
    except BaseException:
        watch.stop()
        raise
    headers = {**SSE_HEADERS, **rate_limits, **_upstream_header(completion)}
    return EventStreamResponse(events, watch, headers)


def _upstream_header(completion: Completion) -> dict[str, str]:
    """Which model and endpoint answered (`model/ordinal`; a fallback names itself), without
    the endpoint's address."""
    answered_by = completion.stats.answered_by
    return {UPSTREAM_HEADER: answered_by} if answered_by else {}
