"""Token usage when the upstream reports none (llama.cpp ignores `include_usage`).

The estimate is documented in the README ("Token usage"): completion tokens are the number of
streamed chunks that carry content or tool-call deltas (servers that stream token by token, as
llama.cpp, vLLM and TGI do, send one per token), or a quarter of the characters of a
non-streamed answer; prompt tokens are a quarter of the characters of the messages.
"""

from __future__ import annotations

from typing import Any

from chatservice.inference.base import Payload

CHARS_PER_TOKEN = 4


class StreamTally:
    """What a relayed stream showed: its usage, its finished choices and its content chunks.

    Reads each chunk only as far as that needs (choices' `finish_reason` and `delta`)."""

    __slots__ = ("content_chunks", "finish_reasons", "finished", "started", "usage")

    def __init__(self) -> None:
        self.usage: dict[str, Any] | None = None
        self.started: set[int] = set()
        self.finished: set[int] = set()
        self.finish_reasons: list[Any] = []
        self.content_chunks = 0

    def observe(self, chunk: Payload) -> None:
        usage = chunk.get("usage")
        if isinstance(usage, dict):
            self.usage = usage
        for choice in chunk.get("choices") or ():
            index = choice.get("index", 0)
            self.started.add(index)
            reason = choice.get("finish_reason")
            if reason is not None:
                self.finished.add(index)
                self.finish_reasons.append(reason)
            delta = choice.get("delta")
            if delta and (delta.get("content") or delta.get("tool_calls")):
                self.content_chunks += 1

    @property
    def complete(self) -> bool:
        """Every choice the stream began ended with a finish reason."""
        return bool(self.finished) and self.started <= self.finished


def estimated_usage(prompt_tokens: int, completion_tokens: int) -> dict[str, Any]:
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
        "estimated": True,  # marks numbers this service computed, not the upstream
    }


def estimate_prompt_tokens(payload: Payload) -> int:
    chars = sum(_message_chars(m) for m in payload.get("messages") or () if isinstance(m, dict))
    return _tokens(chars)


def estimate_completion_tokens(result: Payload) -> int:
    choices = result.get("choices") or ()
    return _tokens(sum(_message_chars(c.get("message") or {}) for c in choices))


def _message_chars(message: dict[str, Any]) -> int:
    content = message.get("content")
    chars = 0
    if isinstance(content, str):
        chars += len(content)
    elif isinstance(content, list):
        chars += sum(
            len(part["text"])
            for part in content
            if isinstance(part, dict) and isinstance(part.get("text"), str)
        )
    for call in message.get("tool_calls") or ():
        function = call.get("function") if isinstance(call, dict) else None
        if isinstance(function, dict):
            chars += len(str(function.get("name") or "")) + len(
                str(function.get("arguments") or "")
            )
    return chars


def _tokens(chars: int) -> int:
    return -(-chars // CHARS_PER_TOKEN)  # rounded up: any text is at least one token
