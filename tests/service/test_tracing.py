"""OpenTelemetry: one chat request is one trace across server, database and upstream."""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from collections.abc import Callable
from typing import Any

import pytest
from fastapi import FastAPI
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from chatservice.db.migrate import upgrade
from chatservice.main import create_app
from chatservice.observability.genai_content import MAX_CONTENT_BYTES, TRUNCATED
from chatservice.observability.logs import JsonFormatter
from tests.service.harness import AUTH, CHAT, make_settings, serve
from tests.service.stub_upstream import REPLY, StubUpstream


async def test_one_request_one_trace_through_server_database_and_upstream(
    create_database: Callable[[], str], upstream: StubUpstream
) -> None:
    url = create_database()
    await asyncio.to_thread(upgrade, url)
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    app = create_app(make_settings(url, upstream), tracer_provider=provider)

    async with serve(app) as http:
        # A stored key, not the bootstrap one, so that authentication reads the database.
        key = await _store_key(app)
        exporter.clear()
        response = await http.post(
            CHAT,
            headers={"Authorization": f"Bearer {key}"},
            json={"model": "upstream", "messages": [{"role": "user", "content": "hi"}]},
        )
    assert response.status_code == 200

    # The usage ledger writes batches of many requests' rows, each in a trace of its own.
    ledger = [s for s in exporter.get_finished_spans() if s.name == "usage ledger write"]
    assert len(ledger) == 1
    assert ledger[0].parent is None
    ledger_traces = {ledger[0].context.trace_id}
    spans = [s for s in exporter.get_finished_spans() if s.context.trace_id not in ledger_traces]
    server = [s for s in spans if s.kind is SpanKind.SERVER]
    assert len(server) == 1
    trace_id = server[0].context.trace_id
    assert {s.context.trace_id for s in spans} == {trace_id}
    assert any(s.attributes and s.attributes.get("db.system") == "postgresql" for s in spans)
    # Client spans besides the database's: the chat span (GenAI conventions) and its HTTP call.
    client_spans = [
        s
        for s in spans
        if s.kind is SpanKind.CLIENT
        and "db.system" not in (s.attributes or {})
        and "gen_ai.operation.name" not in (s.attributes or {})
    ]
    assert len(client_spans) == 1  # the upstream call

    traceparent = upstream.headers[-1]["traceparent"]
    assert traceparent.split("-")[1] == format(trace_id, "032x")
    assert traceparent.split("-")[2] == format(client_spans[0].context.span_id, "016x")


async def _store_key(app: object) -> str:
    from chatservice.keys.service import create_key

    runtime = app.state.runtime  # type: ignore[attr-defined]
    async with runtime.sessionmaker() as session, session.begin():
        plaintext, _ = await create_key(session, name="traced")
    return plaintext


PRIVATE_WORDS = "my very private question"


async def _traced(
    create_database: Callable[[], str], upstream: StubUpstream, **settings: object
) -> tuple[FastAPI, InMemorySpanExporter]:
    url = create_database()
    await asyncio.to_thread(upgrade, url)
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    app = create_app(make_settings(url, upstream, **settings), tracer_provider=provider)
    return app, exporter


def _chat_span(exporter: InMemorySpanExporter, name: str) -> ReadableSpan:
    spans = [s for s in exporter.get_finished_spans() if s.name == name]
    assert len(spans) == 1, [s.name for s in exporter.get_finished_spans()]
    return spans[0]


def _no_content_anywhere(exporter: InMemorySpanExporter) -> None:
    for span in exporter.get_finished_spans():
        for value in (span.attributes or {}).values():
            assert PRIVATE_WORDS not in str(value), span.name
            assert "stub upstream" not in str(value), span.name  # the answer's words


async def test_chat_spans_carry_the_genai_attributes_but_no_content(
    create_database: Callable[[], str], upstream: StubUpstream
) -> None:
    app, exporter = await _traced(create_database, upstream)
    messages = [{"role": "user", "content": PRIVATE_WORDS}]
    async with serve(app) as http:
        json_answer = await http.post(
            CHAT, headers=AUTH, json={"model": "upstream", "messages": messages}
        )
        assert json_answer.status_code == 200
        stream = await http.post(
            CHAT, headers=AUTH, json={"model": "echo", "messages": messages, "stream": True}
        )
        assert stream.status_code == 200
        assert stream.text.endswith("data: [DONE]\n\n")

    span = _chat_span(exporter, "chat upstream")
    assert span.kind is SpanKind.CLIENT
    assert dict(span.attributes or {}) == {
        "gen_ai.operation.name": "chat",
        "gen_ai.request.model": "stub-model-v1",
        "gen_ai.response.model": "stub-model-v1",
        "gen_ai.usage.input_tokens": 5,
        "gen_ai.usage.output_tokens": 5,
        "gen_ai.response.finish_reasons": ("stop",),
    }
    assert span.status.status_code is StatusCode.UNSET
    # The upstream's HTTP call is a child of the chat span, which is a child of the request's.
    http_calls = [
        s
        for s in exporter.get_finished_spans()
        if s.parent is not None and s.parent.span_id == span.context.span_id
    ]
    assert len(http_calls) == 1
    assert span.parent is not None
    assert span.parent.trace_id == span.context.trace_id

    streamed = _chat_span(exporter, "chat echo")
    attributes = dict(streamed.attributes or {})
    assert attributes["gen_ai.request.model"] == "echo"
    assert attributes["gen_ai.response.finish_reasons"] == ("stop",)
    assert attributes["gen_ai.usage.output_tokens"] == len(PRIVATE_WORDS.split())
    input_tokens = attributes["gen_ai.usage.input_tokens"]
    assert isinstance(input_tokens, int)
    assert input_tokens > 0
    _no_content_anywhere(exporter)


async def test_without_capture_legacy_completions_spans_carry_no_content_either(
    create_database: Callable[[], str], upstream: StubUpstream
) -> None:
    app, exporter = await _traced(create_database, upstream)
    assert len(await _legacy_completion_spans(app, exporter)) == 2
    _no_content_anywhere(exporter)


async def _legacy_completion_spans(
    app: FastAPI, exporter: InMemorySpanExporter
) -> list[ReadableSpan]:
    """The spans of one JSON and one streamed legacy completion of PRIVATE_WORDS."""
    async with serve(app) as http:
        for stream in (False, True):
            response = await http.post(
                "/api/v1/completions",
                headers=AUTH,
                json={"model": "upstream", "prompt": PRIVATE_WORDS, "stream": stream},
            )
            assert response.status_code == 200
    return [s for s in exporter.get_finished_spans() if s.name == "text_completion upstream"]


def _content(span: ReadableSpan, attribute: str) -> Any:
    value = (span.attributes or {})[attribute]
    assert isinstance(value, str)
    assert len(value.encode()) <= MAX_CONTENT_BYTES
    return json.loads(value)


async def test_with_capture_on_the_chat_spans_carry_the_messages_and_the_answer(
    create_database: Callable[[], str], upstream: StubUpstream
) -> None:
    app, exporter = await _traced(create_database, upstream, capture_message_content=True)
    messages = [
        {"role": "system", "content": "Answer briefly."},
        {"role": "user", "content": [{"type": "text", "text": PRIVATE_WORDS}]},
    ]
    async with serve(app) as http:
        for stream in (False, True):
            response = await http.post(
                CHAT,
                headers=AUTH,
                json={"model": "upstream", "messages": messages, "stream": stream},
            )
            assert response.status_code == 200

    spans = [s for s in exporter.get_finished_spans() if s.name == "chat upstream"]
    assert len(spans) == 2  # the JSON answer's, then the stream's
    for span in spans:
        # System messages are part of the chat history: the conventions keep them there.
        assert _content(span, "gen_ai.input.messages") == [
            {"role": "system", "parts": [{"type": "text", "content": "Answer briefly."}]},
            {"role": "user", "parts": [{"type": "text", "content": PRIVATE_WORDS}]},
        ]
        # The stream's answer is its deltas, concatenated.
        assert _content(span, "gen_ai.output.messages") == [
            {
                "role": "assistant",
                "parts": [{"type": "text", "content": REPLY}],
                "finish_reason": "stop",
            }
        ]
        assert "gen_ai.system_instructions" not in (span.attributes or {})


async def test_with_capture_on_legacy_completions_record_the_prompt_and_the_text(
    create_database: Callable[[], str], upstream: StubUpstream
) -> None:
    app, exporter = await _traced(create_database, upstream, capture_message_content=True)
    spans = await _legacy_completion_spans(app, exporter)
    assert len(spans) == 2
    for span in spans:
        assert _content(span, "gen_ai.input.messages") == [
            {"role": "user", "parts": [{"type": "text", "content": PRIVATE_WORDS}]}
        ]
        [output] = _content(span, "gen_ai.output.messages")
        assert output["parts"] == [{"type": "text", "content": REPLY}]


async def test_captured_content_is_bounded_and_still_json(
    create_database: Callable[[], str], upstream: StubUpstream
) -> None:
    app, exporter = await _traced(create_database, upstream, capture_message_content=True)
    huge = "x" * (4 * MAX_CONTENT_BYTES)
    messages = [
        {"role": "user", "content": huge},
        {"role": "assistant", "content": 'a "quoted" answer'},
        {"role": "user", "content": PRIVATE_WORDS},
    ]
    async with serve(app) as http:
        response = await http.post(
            CHAT, headers=AUTH, json={"model": "upstream", "messages": messages}
        )
        assert response.status_code == 200
    span = _chat_span(exporter, "chat upstream")
    first, second, third = _content(span, "gen_ai.input.messages")
    kept = first["parts"][0]["content"]
    assert kept.endswith(TRUNCATED)
    assert len(kept) > MAX_CONTENT_BYTES // 2  # cut by the excess, not emptied
    # What comes after the bound is cut too; the structure stays.
    assert [m["role"] for m in (first, second, third)] == ["user", "assistant", "user"]
    assert PRIVATE_WORDS not in json.dumps(third)


async def test_a_failed_upstream_call_marks_the_chat_span_as_an_error(
    create_database: Callable[[], str], upstream: StubUpstream
) -> None:
    app, exporter = await _traced(create_database, upstream)
    upstream.plan.append("status:500")
    async with serve(app) as http:
        response = await http.post(
            CHAT,
            headers=AUTH,
            json={"model": "upstream", "messages": [{"role": "user", "content": "x"}]},
        )
    assert response.status_code == 502
    span = _chat_span(exporter, "chat upstream")
    assert span.status.status_code is StatusCode.ERROR
    assert (span.attributes or {})["error.type"] == "upstream_error"


async def test_the_request_log_line_has_the_trace_the_key_id_the_model_and_tokens(
    create_database: Callable[[], str], upstream: StubUpstream, caplog: pytest.LogCaptureFixture
) -> None:
    app, exporter = await _traced(create_database, upstream)
    caplog.set_level(logging.INFO, logger="chatservice.access")
    async with serve(app) as http:
        key = await _store_key(app)
        response = await http.post(
            CHAT,
            headers={"Authorization": f"Bearer {key}"},
            json={"model": "upstream", "messages": [{"role": "user", "content": "hi"}]},
        )
    assert response.status_code == 200
    [line] = [
        r
        for r in caplog.records
        if r.getMessage() == "request" and getattr(r, "route", None) == CHAT
    ]
    server = [s for s in exporter.get_finished_spans() if s.kind is SpanKind.SERVER]
    assert len(server) == 1
    entry = json.loads(JsonFormatter().format(line))
    assert entry["trace_id"] == format(server[0].context.trace_id, "032x")
    assert entry["span_id"] == format(server[0].context.span_id, "016x")
    assert entry["model"] == "upstream"
    assert (entry["prompt_tokens"], entry["completion_tokens"]) == (5, 5)
    assert entry["outcome"] == "success"
    assert uuid.UUID(entry["key_id"])
    assert key not in json.dumps(entry)
