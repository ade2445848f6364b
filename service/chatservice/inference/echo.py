"""The `echo` backend: deterministic and local, for development, demos and tests.

It answers with the last user message, word by word, counting one token per word. It is the
embedded default so `make run` needs no model server; it is not a model.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import AsyncIterator
from typing import Any

import orjson

from chatservice.config import ModelRoute
from chatservice.inference.base import HEALTHY, BackendHealth, CallStats, Payload, StreamEvent


def _text_of(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):  # content parts: keep the text ones
        texts = (part.get("text") for part in content if isinstance(part, dict))
        return " ".join(text for text in texts if isinstance(text, str)).strip()
    return ""


def _count_tokens(text: str) -> int:
    return len(text.split())


class EchoBackend:
    def __init__(self, token_delay: float = 0.0, max_tokens: int = 1024) -> None:
        self._token_delay = token_delay
        # Like a model's context, a bound on what one answer can be: without it a large
        # prompt times `n` made answers of hundreds of megabytes.
        self._max_tokens = max_tokens

    def _answer(self, payload: Payload) -> tuple[list[str], str, int]:
        messages = payload.get("messages", [])
        prompt_tokens = sum(_count_tokens(_text_of(m.get("content"))) for m in messages)
        last_user = next(
            (_text_of(m.get("content")) for m in reversed(messages) if m.get("role") == "user"),
            "",
        )
        words = last_user.split() or ["(empty)"]
        finish_reason = "stop"
        text = " ".join(words)
        for stop in _stops(payload.get("stop")):
            if stop and stop in text:
                text = text[: text.index(stop)]
                words = text.split()
        requested = payload.get("max_completion_tokens") or payload.get("max_tokens")
        limit = min(requested or self._max_tokens, self._max_tokens)
        if len(words) > limit:
            words = words[:limit]
            finish_reason = "length"
        return words, finish_reason, prompt_tokens

    async def complete(self, route: ModelRoute, payload: Payload, stats: CallStats) -> Payload:
        words, finish_reason, prompt_tokens = self._answer(payload)
        if self._token_delay:
            await asyncio.sleep(self._token_delay * len(words))
        n = payload.get("n") or 1
        return {
            "id": _completion_id(),
            "object": "chat.completion",
            "created": int(time.time()),
            "model": route.name,
            "choices": [
                {
                    "index": i,
                    "message": {"role": "assistant", "content": " ".join(words)},
                    "logprobs": None,
                    "finish_reason": finish_reason,
                }
                for i in range(n)
            ],
            "usage": _usage(prompt_tokens, len(words) * n),
            "system_fingerprint": "echo",
        }

    async def stream(
        self, route: ModelRoute, payload: Payload, stats: CallStats
    ) -> AsyncIterator[list[StreamEvent]]:
        async for chunk in self._chunks(route, payload):
            yield [(chunk, orjson.dumps(chunk))]

    async def _chunks(self, route: ModelRoute, payload: Payload) -> AsyncIterator[Payload]:
        words, finish_reason, prompt_tokens = self._answer(payload)
        n = payload.get("n") or 1
        base = {
            "id": _completion_id(),
            "object": "chat.completion.chunk",
            "created": int(time.time()),
            "model": route.name,
            "system_fingerprint": "echo",
        }

        def chunk(delta: dict[str, Any], finish: str | None = None) -> Payload:
            choices = [
                {"index": i, "delta": delta, "logprobs": None, "finish_reason": finish}
                for i in range(n)
            ]
            return {**base, "choices": choices}

        yield chunk({"role": "assistant", "content": ""})
        for position, word in enumerate(words):
            if self._token_delay:
                await asyncio.sleep(self._token_delay)
            yield chunk({"content": word if position == 0 else " " + word})
        yield chunk({}, finish_reason)
        yield {**base, "choices": [], "usage": _usage(prompt_tokens, len(words) * n)}

    async def check(self, route: ModelRoute) -> BackendHealth:
        return HEALTHY


def _stops(stop: Any) -> list[str]:
    if stop is None:
        return []
    return [stop] if isinstance(stop, str) else list(stop)


def _usage(prompt_tokens: int, completion_tokens: int) -> dict[str, int]:
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
    }


def _completion_id() -> str:
    return "chatcmpl-" + secrets.token_hex(12)
