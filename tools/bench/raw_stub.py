"""The benchmark's upstream: an OpenAI-compatible stub on raw asyncio (uvloop when installed),
so it is never the bottleneck (tens of thousands of JSON answers a second on one core, where an
aiohttp stub does about a third of that).

    python -m tools.bench.raw_stub --port 9100 [--chunks 20]

`POST /v1/chat/completions` answers a completion, or with `"stream": true` the events a model
server sends: a role chunk, `--chunks` content chunks, a finish chunk, a usage chunk and
`data: [DONE]`, each event written on its own (as a server flushing token by token does).
`GET /v1/models` answers the model list. HTTP/1.1 keep-alive; every response has a length, so
the stream needs no chunked framing. Served by the benchmark, never shipped.
"""

from __future__ import annotations

import argparse
import asyncio
import json

MODEL = "stub"
BASE = {"id": "chatcmpl-bench", "object": "chat.completion.chunk", "created": 1_700_000_000}


def completion_body(words: int) -> bytes:
    text = " ".join(f"tok{i}" for i in range(words))
    return json.dumps(
        {
            **BASE,
            "object": "chat.completion",
            "model": MODEL,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": text},
                    "logprobs": None,
                    "finish_reason": "stop",
                }
            ],
            "usage": {"prompt_tokens": 5, "completion_tokens": words, "total_tokens": 5 + words},
        }
    ).encode()


def stream_events(chunks: int) -> list[bytes]:
    def event(payload: dict[str, object]) -> bytes:
        return b"data: " + json.dumps({**BASE, "model": MODEL, **payload}).encode() + b"\n\n"

    def choice(delta: dict[str, str], finish: str | None = None) -> dict[str, object]:
        return {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}

    events = [event({"choices": [choice({"role": "assistant", "content": ""})]})]
    events += [event({"choices": [choice({"content": f" tok{i}"})]}) for i in range(chunks)]
    events.append(event({"choices": [choice({}, "stop")]}))
    usage = {"prompt_tokens": 5, "completion_tokens": chunks, "total_tokens": 5 + chunks}
    events.append(event({"choices": [], "usage": usage}))
    events.append(b"data: [DONE]\n\n")
    return events


def _response(content_type: bytes, length: int) -> bytes:
    return (
        b"HTTP/1.1 200 OK\r\ncontent-type: " + content_type + b"\r\ncontent-length: "
        + str(length).encode() + b"\r\n\r\n"
    )  # fmt: skip


class StubProtocol(asyncio.Protocol):
    def __init__(self, json_response: bytes, stream_head: bytes, events: list[bytes]) -> None:
        self._json = json_response
        self._stream_head = stream_head
        self._events = events
        self._models = self._answer(b"application/json", b'{"object":"list","data":[]}')
        self._buffer = b""
        self._transport: asyncio.Transport | None = None

    @staticmethod
    def _answer(content_type: bytes, body: bytes) -> bytes:
        return _response(content_type, len(body)) + body

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]  # TCP: a Transport (uvloop's is no subclass)

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        while True:
            end = self._buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            head = self._buffer[:end].lower()
            length = 0
            marker = head.find(b"content-length:")
            if marker >= 0:
                length = int(head[marker + 15 :].split(b"\r\n", 1)[0])
            if len(self._buffer) < end + 4 + length:
                return
            body = self._buffer[end + 4 : end + 4 + length]
            self._buffer = self._buffer[end + 4 + length :]
            self._serve(head, body)

    def _serve(self, head: bytes, body: bytes) -> None:
        transport = self._transport
        assert transport is not None
        if head.startswith(b"get"):
            transport.write(self._models)
        elif b'"stream":true' in body.replace(b" ", b""):
            transport.write(self._stream_head)
            for event in self._events:
                transport.write(event)
        else:
            transport.write(self._json)


async def serve(port: int, chunks: int) -> None:
    json_body = completion_body(chunks)
    events = stream_events(chunks)
    json_response = _response(b"application/json", len(json_body)) + json_body
    stream_head = _response(b"text/event-stream", sum(map(len, events)))
    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        lambda: StubProtocol(json_response, stream_head, events), "127.0.0.1", port, backlog=1024
    )
    async with server:
        await server.serve_forever()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--chunks", type=int, default=20)
    args = parser.parse_args()
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    asyncio.run(serve(args.port, args.chunks))


if __name__ == "__main__":
    main()
