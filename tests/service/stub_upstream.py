"""A small OpenAI-compatible upstream the tests own, on loopback, with scripted misbehaviour.

Run alone for benchmarks: `python -m tests.service.stub_upstream --port 9100`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import threading
import time
from collections.abc import Iterator
from typing import Any

from aiohttp import web

from tests.ports import free_port

REPLY = "Hello from the stub upstream"
ACCOUNT_DETAILS = "organization org-stub0rg, key sk-upst****cret"


def _completion(model: str) -> dict[str, Any]:
    return {
        "id": "chatcmpl-stub",
        "object": "chat.completion",
        "created": 1_700_000_000,
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": REPLY},
                "logprobs": None,
                "finish_reason": "stop",
            }
        ],
        "usage": {"prompt_tokens": 5, "completion_tokens": 5, "total_tokens": 10},
    }


def _chunks(
    model: str, words: list[str], include_usage: bool, finish: str | None = "stop"
) -> Iterator[bytes]:
    base = {"id": "chatcmpl-stub", "object": "chat.completion.chunk", "created": 1_700_000_000,
            "model": model}  # fmt: skip

    def event(payload: dict[str, Any]) -> bytes:
        return b"data: " + json.dumps(payload).encode() + b"\n\n"

    def choice(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
        return {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}

    yield event({**base, "choices": [choice({"role": "assistant", "content": ""})]})
    for i, word in enumerate(words):
        yield event({**base, "choices": [choice({"content": word if i == 0 else " " + word})]})
    if finish is not None:
        yield event({**base, "choices": [choice({}, finish)]})
    if include_usage:
        usage = {
            "prompt_tokens": 5,
            "completion_tokens": len(words),
            "total_tokens": 5 + len(words),
        }
        yield event({**base, "choices": [], "usage": usage})
    yield b"data: [DONE]\n\n"


class StubUpstream:
    """Behaviours are queued in `plan`, one per chat request; an empty plan means "ok".

    `ok`, `status:<code>`, `slow_headers` (no answer for 30 s), `slow_body` (headers, then
    a 30 s wait), `stall_stream` (two chunks, then silence), `drop_stream` (two chunks, then
    the connection closes), `slow_stream` (a chunk every 50 ms for 10 s), `unfinished_stream`
    (no finish_reason, then `[DONE]`), `no_usage` (ignores `include_usage`, as llama.cpp
    does; JSON answers without `usage`), `body:<text>` (200 with that body).
    `status:<code>:<seconds>` adds `Retry-After: <seconds>`; `delay:<seconds>` answers ok
    after that long. `default` is the behaviour when the plan is empty.
    `models_status` and `listed_models` script `GET /v1/models`; `models_calls` counts it.
    With `relay_usage` off, embeddings and legacy completions report no usage (streamed or
    not), as some servers do; `relay_word_delay` is the wait before each word of a streamed
    legacy completion.
    """

    def __init__(self, port: int | None = None, host: str = "127.0.0.1") -> None:
        # Another loopback address (127.0.0.2, ...) lets several stubs share one port, as the
        # pods behind a headless Service do.
        self.host = host
        self.port = port or free_port()
        self.plan: list[str] = []
        self.default = "ok"
        self.requests: list[dict[str, Any]] = []
        self.headers: list[dict[str, str]] = []
        self.disconnects = 0
        self.disconnected = threading.Event()
        self.models_status = 200
        self.listed_models = ["stub-model-v1"]
        self.models_calls = 0
        self.relay_usage = True
        self.relay_word_delay = 0.0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._runner: web.AppRunner | None = None

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}/v1"

    def reset(self) -> None:
        self.plan.clear()
        self.default = "ok"
        self.requests.clear()
        self.headers.clear()
        self.disconnects = 0
        self.disconnected.clear()
        self.models_status = 200
        self.listed_models = ["stub-model-v1"]
        self.models_calls = 0
        self.relay_usage = True
        self.relay_word_delay = 0.0

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/v1/chat/completions", self._chat)
        app.router.add_get("/v1/models", self._models)
        app.router.add_post("/v1/embeddings", self._embeddings)
        app.router.add_post("/v1/completions", self._completions)
        return app

    async def _embeddings(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.requests.append(body)
        inputs = body["input"] if isinstance(body["input"], list) else [body["input"]]
        data = [{"object": "embedding", "index": i, "embedding": [0.5, -0.25, float(len(text))]}
                for i, text in enumerate(map(str, inputs))]  # fmt: skip
        answer = {"object": "list", "data": data, "model": body["model"]}
        if self.relay_usage:
            answer["usage"] = {"prompt_tokens": len(inputs), "total_tokens": len(inputs)}
        return web.json_response(answer)

    async def _completions(self, request: web.Request) -> web.StreamResponse:
        """Legacy text completions: the reply's words as `text`, streamed or not."""
        body = await request.json()
        self.requests.append(body)
        base = {"id": "cmpl-stub", "object": "text_completion", "created": 1_700_000_000,
                "model": body["model"]}  # fmt: skip
        usage = {"prompt_tokens": 1, "completion_tokens": 5, "total_tokens": 6}
        if not body.get("stream"):
            choice = {"index": 0, "text": REPLY, "logprobs": None, "finish_reason": "stop"}
            answer = {**base, "choices": [choice]}
            return web.json_response({**answer, "usage": usage} if self.relay_usage else answer)
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        words = REPLY.split()
        for i, word in enumerate(words):
            await asyncio.sleep(self.relay_word_delay)
            finish = "stop" if i == len(words) - 1 else None
            choice = {"index": 0, "text": word if i == 0 else " " + word, "logprobs": None,
                      "finish_reason": finish}  # fmt: skip
            await response.write(
                b"data: " + json.dumps({**base, "choices": [choice]}).encode() + b"\n\n"
            )
        if self.relay_usage and (body.get("stream_options") or {}).get("include_usage"):
            last = {**base, "choices": [], "usage": usage}
            await response.write(b"data: " + json.dumps(last).encode() + b"\n\n")
        await response.write(b"data: [DONE]\n\n")
        await response.write_eof()
        return response

    async def _models(self, request: web.Request) -> web.Response:
        self.models_calls += 1
        if self.models_status != 200:
            error = {"message": f"Incorrect API key for {ACCOUNT_DETAILS}", "type": "x"}
            return web.json_response({"error": error}, status=self.models_status)
        models = [{"id": m, "object": "model", "created": 0, "owned_by": "stub"}
                  for m in self.listed_models]  # fmt: skip
        return web.json_response({"object": "list", "data": models})

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        self.requests.append(body)
        self.headers.append(dict(request.headers))
        behaviour = self.plan.pop(0) if self.plan else self.default
        model = body.get("model", "stub")
        if behaviour.startswith("delay:"):
            await asyncio.sleep(float(behaviour.split(":")[1]))
            behaviour = "ok"
        if behaviour.startswith("status:"):
            status, *retry_after = (int(part) for part in behaviour.split(":")[1:])
            message = f"stub says {status}"
            if status in (401, 403, 429):  # what real upstreams put there: account details
                message += f" for {ACCOUNT_DETAILS}"
            error = {"message": message, "type": "invalid_request_error",
                     "param": "messages", "code": "stub_error"}  # fmt: skip
            headers = {"Retry-After": str(retry_after[0])} if retry_after else None
            return web.json_response({"error": error}, status=status, headers=headers)
        if behaviour.startswith("body:"):
            return web.Response(text=behaviour[len("body:") :], content_type="application/json")
        if behaviour == "slow_headers":
            await self._wait_for_disconnect(request, 30)
            return web.Response(status=204)
        if not body.get("stream"):
            if behaviour == "slow_body":
                response = web.StreamResponse(headers={"Content-Type": "application/json"})
                await response.prepare(request)
                await self._wait_for_disconnect(request, 30)
                return response
            answer = _completion(model)
            if behaviour == "no_usage":
                del answer["usage"]
            return web.json_response(answer)
        include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
        include_usage = include_usage and behaviour != "no_usage"
        finish = None if behaviour == "unfinished_stream" else "stop"
        words = REPLY.split() if behaviour != "slow_stream" else [f"w{i}" for i in range(200)]
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        try:
            for i, event in enumerate(_chunks(model, words, include_usage, finish)):
                if behaviour in ("stall_stream", "drop_stream") and i == 2:
                    if behaviour == "drop_stream":
                        assert request.transport is not None
                        request.transport.close()
                        return response
                    await self._wait_for_disconnect(request, 30)
                    return response
                await response.write(event)
                if behaviour == "slow_stream":
                    await asyncio.sleep(0.05)
        except (ConnectionResetError, ConnectionError):
            self._record_disconnect()
            return response
        await response.write_eof()
        return response

    async def _wait_for_disconnect(self, request: web.Request, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if request.transport is None or request.transport.is_closing():
                self._record_disconnect()
                return
            await asyncio.sleep(0.01)

    def _record_disconnect(self) -> None:
        self.disconnects += 1
        self.disconnected.set()

    def start(self) -> None:
        """Serve (again, after `stop()`: same port)."""
        self._ready.clear()
        self._thread = threading.Thread(target=self._serve, name="stub-upstream", daemon=True)
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("stub upstream did not start")

    def _serve(self) -> None:
        self._loop = asyncio.new_event_loop()
        self._loop.run_until_complete(self._start_site())
        self._ready.set()
        self._loop.run_forever()

    async def _start_site(self) -> None:
        self._runner = web.AppRunner(self.app(), access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, self.host, self.port).start()

    def stop(self) -> None:
        if self._loop is None or self._runner is None:
            return
        future = asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop)
        future.result(timeout=10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        if self._thread is not None:
            self._thread.join(timeout=10)

    def __enter__(self) -> StubUpstream:
        self.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop()


def echo_and_stub_routes(upstream: StubUpstream, api_key: str = "sk-upstream") -> str:
    """`CHATSERVICE_MODELS` for a service with the echo model and `upstream` as `upstream`."""
    return json.dumps([
        {"name": "echo", "backend": "echo"},
        {"name": "upstream", "backend": "openai", "base_url": upstream.base_url,
         "upstream_model": "stub-model-v1", "api_key": api_key},
    ])  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, default=9100)
    args = parser.parse_args()
    web.run_app(StubUpstream(args.port).app(), host="127.0.0.1", port=args.port,
                access_log=None, print=None)  # fmt: skip


if __name__ == "__main__":
    main()
