"""Token usage when the upstream reports none (llama.cpp ignores `include_usage`).

Both ways are documented in the README ("Token usage"). With a route's tokenizer, tokens of the
messages' and the answer's text. Otherwise an estimate: completion tokens are the number of
streamed chunks that carry content or tool-call deltas (servers that stream token by token, as
llama.cpp, vLLM and TGI do, send one per token), or a quarter of the characters of a
non-streamed answer; prompt tokens are a quarter of the characters of the messages.
The legacy completions and embeddings APIs count the same way: their `prompt` or `input` is
the prompt (a token-id array counts its ids), a legacy choice's `text` the answer.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, Literal

from tokenizers import Tokenizer

from chatservice.config import ModelRoute
from chatservice.inference.base import Payload

CHARS_PER_TOKEN = 4
PROMPT_FIELDS = ("prompt", "input")  # of the legacy completions and the embeddings APIs
UsageSource = Literal["tokenizer", "estimate"]


class TokenizerLoadError(ValueError):
    """A route's tokenizer file cannot be used; the message is one line naming route and file."""


class TokenCounter:
    """Counts tokens of text with one route's Hugging Face tokenizer, loaded from a local file."""

    __slots__ = ("_tokenizer",)

    def __init__(self, tokenizer: Tokenizer) -> None:
        self._tokenizer = tokenizer

    @classmethod
    def load(cls, route: str, path: Path) -> TokenCounter:
        try:
            tokenizer = Tokenizer.from_file(str(path))
        except Exception as exc:  # the Rust loader raises plain Exception for every cause
            reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            raise TokenizerLoadError(
                f"model {route!r}: tokenizer {str(path)!r} is not a usable Hugging Face "
                f"tokenizer.json: {reason}"
            ) from None
        return cls(tokenizer)

    def count(self, texts: Iterable[str]) -> int:
        # Special tokens (BOS, a chat template's markers) are the template's, not the text's.
        batch = [text for text in texts if text]
        if not batch:
            return 0
        return sum(
            len(e.ids) for e in self._tokenizer.encode_batch(batch, add_special_tokens=False)
        )


def load_token_counters(routes: Iterable[ModelRoute]) -> dict[str, TokenCounter]:
    """Every configured tokenizer, by route name; a file that does not load stops the start."""
    return {
        route.name: TokenCounter.load(route.name, route.tokenizer)
        for route in routes
        if route.tokenizer is not None
    }


class StreamTally:
    """What a relayed stream showed: its usage, its finished choices and its content chunks,
    and with `keep_text` the answer's text (for a tokenizer) until the upstream sends usage.

    Reads each chunk only as far as that needs (choices' `finish_reason` and `delta`)."""

    __slots__ = ("content_chunks", "finish_reasons", "finished", "started", "text", "usage")

    def __init__(self, keep_text: bool = False) -> None:
        self.usage: dict[str, Any] | None = None
        self.started: set[int] = set()
        self.finished: set[int] = set()
        self.finish_reasons: list[Any] = []
        self.content_chunks = 0
        # Pieces per (choice, tool call) so that each text is tokenized whole; -1: the content.
        self.text: dict[tuple[int, int], list[str]] | None = {} if keep_text else None

    def observe(self, chunk: Payload) -> None:
        usage = chunk.get("usage")
        if isinstance(usage, dict):
            self.usage = usage
            self.text = None  # the upstream counted: nothing left to tokenize
        for choice in chunk.get("choices") or ():
            index = choice.get("index", 0)
            self.started.add(index)
            reason = choice.get("finish_reason")
            if reason is not None:
                self.finished.add(index)
                self.finish_reasons.append(reason)
            text = choice.get("text")  # a legacy completion's chunk
            if isinstance(text, str) and text:
                self.content_chunks += 1
                if self.text is not None:
                    self.text.setdefault((index, -1), []).append(text)
            delta = choice.get("delta")
            if delta and (delta.get("content") or delta.get("tool_calls")):
                self.content_chunks += 1
                if self.text is not None:
                    self._keep_text(index, delta)

    def _keep_text(self, index: int, delta: dict[str, Any]) -> None:
        assert self.text is not None  # noqa: S101 - only called while keeping text
        content = delta.get("content")
        if isinstance(content, str):
            self.text.setdefault((index, -1), []).append(content)
        for call in delta.get("tool_calls") or ():
            function = call.get("function") if isinstance(call, dict) else None
            if isinstance(function, dict):
                pieces = self.text.setdefault((index, call.get("index", 0)), [])
                pieces += [s for s in (function.get("name"), function.get("arguments"))
                           if isinstance(s, str)]  # fmt: skip

    def answer_texts(self) -> Iterator[str]:
        return ("".join(pieces) for pieces in (self.text or {}).values())

    @property
    def complete(self) -> bool:
        """Every choice the stream began ended with a finish reason."""
        return bool(self.finished) and self.started <= self.finished


def estimated_usage(
    prompt_tokens: int, completion_tokens: int, source: UsageSource = "estimate"
) -> dict[str, Any]:
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
        "estimated": True,  # marks numbers this service computed, not the upstream
        "usage_source": source,
    }


def prompt_texts(payload: Payload) -> Iterator[str]:
    for message in payload.get("messages") or ():
        if isinstance(message, dict):
            yield from _message_texts(message)
    for field in PROMPT_FIELDS:
        value = payload.get(field)
        if isinstance(value, str):
            yield value
        elif isinstance(value, list):
            yield from (item for item in value if isinstance(item, str))


def answer_texts(result: Payload) -> Iterator[str]:
    for choice in result.get("choices") or ():
        text = choice.get("text")
        if isinstance(text, str):
            yield text
        yield from _message_texts(choice.get("message") or {})


def estimate_prompt_tokens(payload: Payload) -> int:
    return _tokens(sum(map(len, prompt_texts(payload)))) + prompt_token_ids(payload)


def prompt_token_ids(payload: Payload) -> int:
    """The tokens a legacy prompt or an embeddings input gives as ids: `[1, 2]`, `[[1], [2]]`."""
    count = 0
    for field in PROMPT_FIELDS:
        value = payload.get(field)
        for item in value if isinstance(value, list) else ():
            if isinstance(item, int):
                count += 1
            elif isinstance(item, list):
                count += sum(isinstance(token, int) for token in item)
    return count


def estimate_completion_tokens(result: Payload) -> int:
    return _tokens(sum(map(len, answer_texts(result))))


def _message_texts(message: dict[str, Any]) -> Iterator[str]:
    """The text a model reads or writes in one message: its content (text parts of a list) and
    its tool calls' names and arguments; not its role, images or audio."""
    content = message.get("content")
    if isinstance(content, str):
        yield content
    elif isinstance(content, list):
        for part in content:
            if isinstance(part, dict) and isinstance(part.get("text"), str):
                yield part["text"]
    for call in message.get("tool_calls") or ():
        function = call.get("function") if isinstance(call, dict) else None
        if isinstance(function, dict):
            yield str(function.get("name") or "")
            yield str(function.get("arguments") or "")


def _tokens(chars: int) -> int:
    return -(-chars // CHARS_PER_TOKEN)  # rounded up: any text is at least one token
