"""The semantic conventions' message JSON of captured content: tool calls, streams, bounds."""

from __future__ import annotations

import json

from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF, ALWAYS_ON

from chatservice.config import ModelRoute
from chatservice.observability.genai import ChatSpan
from chatservice.observability.genai_content import (
    MAX_CONTENT_BYTES,
    StreamedAnswer,
    bounded_json,
    input_messages,
    output_messages,
)


def test_tool_calls_and_tool_results_are_parts_of_their_messages() -> None:
    payload = {
        "messages": [
            {"role": "user", "content": "Weather in Paris?"},
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "id": "call_1",
                        "type": "function",
                        "function": {"name": "weather", "arguments": '{"city": "Paris"}'},
                    }
                ],
            },
            {"role": "tool", "tool_call_id": "call_1", "content": "18 °C"},
        ]
    }
    assert input_messages(payload) == [
        {"role": "user", "parts": [{"type": "text", "content": "Weather in Paris?"}]},
        {
            "role": "assistant",
            "parts": [
                {"type": "tool_call", "id": "call_1", "name": "weather",
                 "arguments": {"city": "Paris"}},
            ],
        },
        {"role": "tool", "parts": [{"type": "tool_call_response", "id": "call_1",
                                     "response": "18 °C"}]},
    ]  # fmt: skip


def test_a_streamed_tool_call_is_assembled_from_its_deltas() -> None:
    answer = StreamedAnswer()
    deltas = [
        {"role": "assistant", "content": None, "tool_calls": [
            {"index": 0, "id": "call_1", "function": {"name": "weather", "arguments": ""}}]},
        {"tool_calls": [{"index": 0, "function": {"arguments": '{"city": '}}]},
        {"tool_calls": [{"index": 0, "function": {"arguments": '"Paris"}'}}]},
    ]  # fmt: skip
    for delta in deltas:
        answer.observe({"choices": [{"index": 0, "delta": delta, "finish_reason": None}]})
    answer.observe({"choices": [{"index": 0, "delta": {}, "finish_reason": "tool_calls"}]})
    assert answer.messages() == [
        {
            "role": "assistant",
            "parts": [{"type": "tool_call", "id": "call_1", "name": "weather",
                       "arguments": {"city": "Paris"}}],
            "finish_reason": "tool_calls",
        }
    ]  # fmt: skip


def test_a_stream_keeps_a_bounded_amount_of_text() -> None:
    answer = StreamedAnswer()
    piece = "y" * 1024
    for _ in range(4 * MAX_CONTENT_BYTES // len(piece)):
        answer.observe({"choices": [{"index": 0, "delta": {"content": piece}}]})
    [message] = answer.messages()
    assert len(message["parts"][0]["content"]) <= MAX_CONTENT_BYTES + len(piece)


def test_legacy_choices_and_embeddings_inputs() -> None:
    assert input_messages({"input": ["one", "two", [1, 2]]}) == [
        {"role": "user", "parts": [{"type": "text", "content": "one"}]},
        {"role": "user", "parts": [{"type": "text", "content": "two"}]},
    ]
    assert output_messages({"choices": [{"text": "done", "finish_reason": "length"}]}) == [
        {"role": "assistant", "parts": [{"type": "text", "content": "done"}],
         "finish_reason": "length"}
    ]  # fmt: skip


def test_json_that_escapes_heavily_is_still_bounded_and_valid() -> None:
    messages = [
        {"role": "user", "parts": [{"type": "text", "content": "\x01" * MAX_CONTENT_BYTES}]}
    ]
    encoded = bounded_json(messages)
    assert len(encoded.encode()) <= MAX_CONTENT_BYTES
    json.loads(encoded)


def test_structure_beyond_the_bound_is_cut_plainly() -> None:
    messages = [{"role": "user", "parts": []}] * MAX_CONTENT_BYTES
    assert len(bounded_json(messages).encode()) <= MAX_CONTENT_BYTES


def test_a_span_the_sampler_dropped_captures_nothing() -> None:
    route = ModelRoute(name="echo")
    request = {"messages": [{"role": "user", "content": "hi"}]}
    dropped = TracerProvider(sampler=ALWAYS_OFF).get_tracer("test")
    kept = TracerProvider(sampler=ALWAYS_ON).get_tracer("test")
    assert not ChatSpan(dropped, route, captured_request=request).captures_content
    assert ChatSpan(kept, route, captured_request=request).captures_content
    assert not ChatSpan(kept, route).captures_content
