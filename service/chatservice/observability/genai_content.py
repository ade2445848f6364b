"""Message content on the GenAI spans, only when
`OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT` is true: the request's messages and the
answer's choices in the semantic conventions' JSON (`gen_ai.input.messages`,
`gen_ai.output.messages`), each bounded to `MAX_CONTENT_BYTES`.

Text and tool calls are kept; images, audio and files are not (only their text parts are).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

import orjson

from chatservice.inference.base import Payload, StreamEvent

# Each content attribute at most (UTF-8 JSON), so a huge prompt cannot blow up the exporter.
MAX_CONTENT_BYTES = 64 * 1024
# The field of each part type that holds text, and so is what a bound cuts.
TEXT_FIELDS = {"text": "content", "tool_call_response": "response"}
TRUNCATED = "…[truncated]"
PROMPT_FIELDS = ("prompt", "input")  # of the legacy completions and the embeddings APIs

Message = dict[str, Any]


def input_messages(payload: Payload) -> list[Message]:
    """The request's messages; system messages stay among them, as the conventions ask of
    instructions that are part of the chat history (so no `gen_ai.system_instructions`)."""
    messages = [
        _message(message) for message in payload.get("messages") or () if isinstance(message, dict)
    ]
    for field in PROMPT_FIELDS:  # a legacy prompt or embeddings input: one user message each
        value = payload.get(field)
        texts = [value] if isinstance(value, str) else value if isinstance(value, list) else []
        messages += [_user_text(text) for text in texts if isinstance(text, str)]
    return messages


def output_messages(result: Payload) -> list[Message]:
    """A JSON answer's choices (chat messages or legacy texts) with their finish reasons."""
    messages = []
    for choice in result.get("choices") or ():
        if not isinstance(choice, dict):
            continue
        message = choice.get("message")
        if isinstance(message, dict):
            output = _message(message)
        else:
            text = choice.get("text")
            output = {"role": "assistant", "parts": _text_parts(text)}
        output["finish_reason"] = choice.get("finish_reason")
        messages.append(output)
    return messages


def bounded_json(messages: list[Message]) -> str:
    """`messages` as JSON of `MAX_CONTENT_BYTES` at most: the texts are cut, in order, by as
    much as the excess, so that what is left is still valid JSON."""
    encoded = orjson.dumps(messages)
    budget = sum(map(len, _texts_of(messages)))
    for _ in range(4):  # escaping makes a character more than one byte: a few rounds converge
        excess = len(encoded) - MAX_CONTENT_BYTES
        if excess <= 0:
            return encoded.decode()
        budget = max(budget - excess - len(TRUNCATED.encode()), 0)
        encoded = orjson.dumps(_cut(messages, budget))
    # Roles and structure alone exceed the bound (thousands of messages): a plain cut.
    return encoded[:MAX_CONTENT_BYTES].decode(errors="ignore")


class StreamedAnswer:
    """A stream's choices as they arrive (only while content is captured), up to
    `MAX_CONTENT_BYTES` characters of text in all, so that memory stays bounded too."""

    __slots__ = ("_choices", "_kept")

    def __init__(self) -> None:
        self._choices: dict[int, _StreamedChoice] = {}
        self._kept = 0

    async def observing(
        self, batches: AsyncIterator[list[StreamEvent]]
    ) -> AsyncIterator[list[StreamEvent]]:
        """`batches` passed through, each chunk observed; closing this closes `batches`."""
        try:
            async for batch in batches:
                for chunk, _ in batch:
                    self.observe(chunk)
                yield batch
        finally:
            aclose = getattr(batches, "aclose", None)
            if aclose is not None:
                await aclose()

    def observe(self, chunk: Payload) -> None:
        for choice in chunk.get("choices") or ():
            if not isinstance(choice, dict):
                continue
            streamed = self._choices.setdefault(choice.get("index", 0), _StreamedChoice())
            reason = choice.get("finish_reason")
            if reason is not None:
                streamed.finish_reason = reason
            delta = choice.get("delta")
            if isinstance(delta, dict):
                if isinstance(delta.get("role"), str):
                    streamed.role = delta["role"]
                self._keep(streamed.text, delta.get("content"))
                for call in delta.get("tool_calls") or ():
                    if isinstance(call, dict):
                        self._keep_call(streamed, call)
            else:
                self._keep(streamed.text, choice.get("text"))  # a legacy completion's chunk

    def _keep_call(self, streamed: _StreamedChoice, call: dict[str, Any]) -> None:
        kept = streamed.calls.setdefault(call.get("index", 0), {"arguments": []})
        if isinstance(call.get("id"), str):
            kept["id"] = call["id"]
        function = call.get("function")
        if isinstance(function, dict):
            if isinstance(function.get("name"), str):
                kept["name"] = function["name"]
            self._keep(kept["arguments"], function.get("arguments"))

    def _keep(self, pieces: list[str], text: Any) -> None:
        if isinstance(text, str) and text and self._kept < MAX_CONTENT_BYTES:
            pieces.append(text)
            self._kept += len(text)

    def messages(self) -> list[Message]:
        messages = []
        for _, streamed in sorted(self._choices.items()):
            parts = _text_parts("".join(streamed.text))
            parts += [
                _tool_call(call.get("id"), call.get("name"), "".join(call["arguments"]))
                for _, call in sorted(streamed.calls.items())
            ]
            messages.append(
                {"role": streamed.role, "parts": parts, "finish_reason": streamed.finish_reason}
            )
        return messages


class _StreamedChoice:
    __slots__ = ("calls", "finish_reason", "role", "text")

    def __init__(self) -> None:
        self.role = "assistant"
        self.text: list[str] = []
        self.calls: dict[int, dict[str, Any]] = {}
        self.finish_reason: Any = None


def _message(message: dict[str, Any]) -> Message:
    role = message.get("role")
    content = message.get("content")
    if role == "tool":
        response = content if isinstance(content, str) else "".join(_texts(content))
        parts = [
            {"type": "tool_call_response", "id": message.get("tool_call_id"), "response": response}
        ]
    else:
        parts = _text_parts(content) or [
            {"type": "text", "content": text} for text in _texts(content)
        ]
    for call in message.get("tool_calls") or ():
        function = call.get("function") if isinstance(call, dict) else None
        if isinstance(function, dict):
            parts.append(
                _tool_call(call.get("id"), function.get("name"), function.get("arguments"))
            )
    return {"role": role, "parts": parts}


def _user_text(text: str) -> Message:
    return {"role": "user", "parts": _text_parts(text)}


def _text_parts(text: Any) -> list[dict[str, Any]]:
    return [{"type": "text", "content": text}] if isinstance(text, str) and text else []


def _texts(content: Any) -> Iterator[str]:
    """The texts of a list content's text parts (not its images, audio or files)."""
    for part in content if isinstance(content, list) else ():
        if isinstance(part, dict) and isinstance(part.get("text"), str):
            yield part["text"]


def _tool_call(call_id: Any, name: Any, arguments: Any) -> dict[str, Any]:
    # OpenAI sends arguments as a JSON string; the conventions record the object when it is one.
    if isinstance(arguments, str):
        try:
            arguments = orjson.loads(arguments)
        except orjson.JSONDecodeError:
            pass
    return {"type": "tool_call", "id": call_id, "name": name, "arguments": arguments}


def _texts_of(messages: list[Message]) -> Iterator[str]:
    for message in messages:
        for part in message.get("parts") or ():
            text = part.get(TEXT_FIELDS.get(part.get("type"), ""))
            if isinstance(text, str):
                yield text


def _cut(messages: list[Message], budget: int) -> list[Message]:
    """`messages` with their texts' characters, in order, `budget` in all; a cut text ends
    in `TRUNCATED`."""
    cut = []
    for message in messages:
        parts = []
        for part in message.get("parts") or ():
            field = TEXT_FIELDS.get(part.get("type"), "")
            text = part.get(field)
            if isinstance(text, str):
                if len(text) > budget:
                    part = {**part, field: text[:budget] + TRUNCATED}
                budget = max(budget - len(text), 0)
            parts.append(part)
        cut.append({**message, "parts": parts})
    return cut
