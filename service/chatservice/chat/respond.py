"""The HTTP response to an admitted completion (chat, legacy or embeddings): its JSON answer or
its event stream, with the admission's rate-limit headers on success and on errors, and 499
when the client left before the answer."""

from __future__ import annotations

import orjson
from fastapi.responses import JSONResponse, Response, StreamingResponse
from starlette.requests import Request

from chatservice.chat.service import ClientDisconnectedError, Completion, cancel_on_disconnect
from chatservice.errors import ChatServiceError, error_body

UPSTREAM_HEADER = "x-chatservice-upstream"
SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


async def respond(
    request: Request, completion: Completion, *, stream: bool, include_usage: bool
) -> Response:
    admission = completion.admission
    rate_limits = admission.headers if admission is not None else {}
    try:
        if stream:
            events = await cancel_on_disconnect(request, completion.open_stream(include_usage))
            return StreamingResponse(
                events,
                media_type="text/event-stream",
                headers={**SSE_HEADERS, **rate_limits, **_upstream_header(completion)},
            )
        result = await cancel_on_disconnect(request, completion.run())
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


def _upstream_header(completion: Completion) -> dict[str, str]:
    """Which model and endpoint answered (`model/ordinal`; a fallback names itself), without
    the endpoint's address."""
    answered_by = completion.stats.answered_by
    return {UPSTREAM_HEADER: answered_by} if answered_by else {}
