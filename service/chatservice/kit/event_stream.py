"""A server-sent events response written straight to the server's `send`.

Starlette's StreamingResponse runs each stream in an anyio task group with a disconnect
listener (uvicorn advertises ASGI 2.3); here the request's one `DisconnectWatch`, started
before the upstream was called, keeps watching while the events go out, and the events'
iterator is closed however the response ends, so the upstream connection goes back at once.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, Mapping

from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from chatservice.kit.disconnect import DisconnectWatch


class EventStreamResponse(Response):
    media_type = "text/event-stream"

    def __init__(
        self,
        events: AsyncGenerator[bytes, None],
        watch: DisconnectWatch,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        self.events = events
        self.watch = watch
        self.status_code = 200
        self.background = None
        self.init_headers(headers)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await send({"type": "http.response.start", "status": 200, "headers": self.raw_headers})
            async for data in self.events:
                await send({"type": "http.response.body", "body": data, "more_body": True})
            await send({"type": "http.response.body", "body": b"", "more_body": False})
        except asyncio.CancelledError:
            if not self.watch.took_back():
                raise
            # The client left: nobody to send the end to, and nothing went wrong here.
        finally:
            self.watch.stop()
            await self.events.aclose()
