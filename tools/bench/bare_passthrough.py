"""The floor to compare against: the thinnest FastAPI passthrough with a pooled aiohttp
client, no validation, auth, metrics or logging; streams are relayed as aiohttp buffers them.
Served by the benchmark, never shipped."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import aiohttp
from fastapi import FastAPI, Request
from fastapi.responses import Response, StreamingResponse

UPSTREAM = os.environ.get("BARE_UPSTREAM", "http://127.0.0.1:9100/v1") + "/chat/completions"


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    app.state.http = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=256))
    yield
    await app.state.http.close()


app = FastAPI(lifespan=lifespan)


@app.post("/v1/chat/completions")
async def chat(request: Request) -> Response:
    body = await request.body()
    headers = {"Content-Type": "application/json"}
    if b'"stream":true' not in body.replace(b" ", b""):
        async with request.app.state.http.post(UPSTREAM, data=body, headers=headers) as upstream:
            return Response(await upstream.read(), media_type="application/json")
    upstream = await request.app.state.http.post(UPSTREAM, data=body, headers=headers)

    async def relay() -> AsyncIterator[bytes]:
        try:
            async for data in upstream.content.iter_any():
                yield data
        finally:
            upstream.release()

    return StreamingResponse(relay(), media_type="text/event-stream")


@app.get("/v1/models")
async def models() -> dict[str, object]:
    return {"object": "list", "data": []}
