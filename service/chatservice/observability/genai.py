"""The span of a completion (chat, legacy or embeddings), with OpenTelemetry's GenAI
semantic-convention attributes.

Names, models, token counts and finish reasons; the messages and the answer only when content
capture is on (observability/genai_content.py).
"""

from __future__ import annotations

from collections.abc import Iterable
from contextlib import AbstractContextManager, nullcontext
from typing import Any

from opentelemetry import trace
from opentelemetry.trace import Span, SpanKind, Status, StatusCode, Tracer

from chatservice.config import ModelRoute
from chatservice.inference.base import Api, Payload
from chatservice.observability.genai_content import Message, bounded_json, input_messages

# The semantic conventions' `gen_ai.operation.name` of each API.
OPERATIONS: dict[Api, str] = {
    "chat/completions": "chat",
    "completions": "text_completion",
    "embeddings": "embeddings",
}


class ChatSpan:
    """One `{operation} {model}` client span around a backend call (`chat upstream`); a no-op
    without a tracer. With `captured_request` (content capture on) it records that request's
    messages, and `end` the answer's."""

    __slots__ = ("_span", "captures_content")

    def __init__(
        self,
        tracer: Tracer | None,
        route: ModelRoute,
        api: Api = "chat/completions",
        captured_request: Payload | None = None,
    ) -> None:
        self._span: Span | None = None
        self.captures_content = False
        if tracer is not None:
            operation = OPERATIONS[api]
            self._span = tracer.start_span(
                f"{operation} {route.name}",
                kind=SpanKind.CLIENT,
                attributes={
                    "gen_ai.operation.name": operation,
                    "gen_ai.request.model": route.upstream_model or route.name,
                },
            )
            # Not for a span the sampler dropped: its content would be serialized for nothing.
            self.captures_content = captured_request is not None and self._span.is_recording()
            if captured_request is not None and self.captures_content:
                messages = input_messages(captured_request)
                if messages:
                    self._span.set_attribute("gen_ai.input.messages", bounded_json(messages))

    @property
    def recording(self) -> bool:
        return self._span is not None

    def active(self) -> AbstractContextManager[Any]:
        """Makes the span current, so the upstream HTTP call's span is its child."""
        if self._span is None:
            return nullcontext()
        return trace.use_span(self._span, record_exception=False, set_status_on_exception=False)

    def end(
        self,
        outcome: str,
        response_model: Any,
        usage: Any,
        finish_reasons: Iterable[Any],
        output_messages: list[Message] | None = None,
    ) -> None:
        span = self._span
        if span is None:
            return
        self._span = None
        if isinstance(response_model, str):
            span.set_attribute("gen_ai.response.model", response_model)
        if isinstance(usage, dict):
            for kind, attribute in (("prompt", "input"), ("completion", "output")):
                tokens = usage.get(f"{kind}_tokens")
                if isinstance(tokens, int):
                    span.set_attribute(f"gen_ai.usage.{attribute}_tokens", tokens)
        reasons = [reason for reason in finish_reasons if isinstance(reason, str)]
        if reasons:
            span.set_attribute("gen_ai.response.finish_reasons", reasons)
        if output_messages:
            span.set_attribute("gen_ai.output.messages", bounded_json(output_messages))
        if outcome != "success":
            span.set_attribute("error.type", outcome)
            span.set_status(Status(StatusCode.ERROR))
        span.end()
