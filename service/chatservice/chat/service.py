"""Running one chat completion through its backend, with the metrics that describe it."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncGenerator, AsyncIterator, Iterable
from typing import Any

import orjson
from opentelemetry.trace import Tracer

from chatservice.accounting.service import Admission
from chatservice.chat.shutdown import OpenStreams, shutdown_error
from chatservice.chat.usage import (
    StreamTally,
    TokenCounter,
    answer_texts,
    estimate_completion_tokens,
    estimate_prompt_tokens,
    estimated_usage,
    prompt_texts,
    prompt_token_ids,
)
from chatservice.config import ModelRoute
from chatservice.errors import (
    INTERNAL_ERROR_MESSAGE,
    ChatServiceError,
    UpstreamError,
    error_body,
)
from chatservice.inference.base import Answering, Api, CallStats, Payload, StreamEvent
from chatservice.kit.disconnect import ClientDisconnectedError
from chatservice.observability import context, metrics
from chatservice.observability.genai import ChatSpan
from chatservice.observability.genai_content import Message, StreamedAnswer, output_messages

log = logging.getLogger(__name__)


class Completion:
    """One completion's bookkeeping (a chat completion, or through `api` a legacy completion or
    embeddings, whose answers are relayed as they are): timings, outcome and token counts."""

    def __init__(
        self,
        route: ModelRoute,
        backend: Answering,
        payload: Payload,
        streams: OpenStreams | None = None,
        tracer: Tracer | None = None,
        tokens: TokenCounter | None = None,
        admission: Admission | None = None,
        api: Api = "chat/completions",
        capture_content: bool = False,
    ) -> None:
        self.route = route
        self.admission = admission
        self.backend = backend
        self.payload = payload
        self.streams = streams
        self.tokens = tokens
        self.stats = CallStats()
        self.started = time.perf_counter()
        self.span = ChatSpan(tracer, route, api, payload if capture_content else None)
        # What the span reports when it ends.
        self.response_model: Any = None
        self.usage: Any = None
        self.finish_reasons: Iterable[Any] = ()
        self.output_messages: list[Message] | None = None
        # For the usage ledger: whether the stream's headers went out (its status is 200
        # whatever follows), and when its first chunk came.
        self.streaming = False
        self.time_to_first_token: float | None = None

    async def run(self) -> Payload:
        try:
            with self.span.active():
                result = await self.backend.complete(self.route, self.payload, self.stats)
        except BaseException as exc:
            self._finish(_outcome(exc), exc)
            raise
        if not isinstance(result.get("usage"), dict):
            if self.tokens is None:
                result["usage"] = estimated_usage(
                    estimate_prompt_tokens(self.payload), estimate_completion_tokens(result)
                )
            else:
                result["usage"] = self._counted_usage(answer_texts(result))
        self._count_usage(result["usage"])
        if self.span.recording:
            self.response_model = result.get("model")
            self.finish_reasons = _finish_reasons(result.get("choices"))
            if self.span.captures_content:
                self.output_messages = output_messages(result)
        self._finish("success")
        return result

    async def open_stream(self, include_usage: bool) -> AsyncGenerator[bytes, None]:
        """Start the stream and wait for its first chunk, so that failures before the first
        byte still get a proper HTTP status; the rest is streamed by the returned iterator."""
        chunks = aiter(self.backend.stream(self.route, self.payload, self.stats))
        answer: StreamedAnswer | None = None
        if self.span.captures_content:
            # A wrapper that reads every chunk, only then: without capture a chunk costs nothing.
            answer = StreamedAnswer()
            chunks = answer.observing(chunks)
        try:
            with self.span.active():
                first = await anext(chunks)
        except BaseException as exc:
            self._finish(_outcome(exc), exc)
            raise
        self.response_model = first[0][0].get("model")
        self.time_to_first_token = time.perf_counter() - self.started
        metrics.observe_latency(
            metrics.TIME_TO_FIRST_TOKEN, self.time_to_first_token, self.route.name
        )
        return self._events(first, chunks, include_usage, answer)

    async def _events(
        self,
        first: list[StreamEvent],
        chunks: AsyncIterator[list[StreamEvent]],
        include_usage: bool,
        answer: StreamedAnswer | None,
    ) -> AsyncGenerator[bytes, None]:
        outcome = "success"
        error: BaseException | None = None
        tally = StreamTally(keep_text=self.tokens is not None)
        computed: dict[str, Any] | None = None  # usage this service computed for the client
        task = asyncio.current_task()
        self.streaming = True
        if self.streams is not None and task is not None:
            self.streams.add(task)
        try:
            batch: list[StreamEvent] | None = first
            last = first[0][0]
            while batch is not None:
                # What one upstream read brought goes out in one write.
                out: list[bytes] = []
                for chunk, data in batch:
                    tally.observe(chunk)
                    last = chunk
                    if not include_usage and "usage" in chunk:
                        # The client did not ask for usage: no usage-only chunk, no field.
                        if chunk["usage"] and not chunk.get("choices"):
                            continue
                        del chunk["usage"]
                        data = orjson.dumps(chunk)
                    out += (b"data: ", data, b"\n\n")
                if out:
                    yield b"".join(out)
                batch = await anext(chunks, None)
            if not tally.complete:
                raise UpstreamError(
                    f"The upstream for `{self.route.name}` ended the stream before finishing "
                    "the answer (no finish_reason): the answer is incomplete.",
                    code="upstream_stream_truncated",
                )
            if tally.usage is None and include_usage:
                computed = self._estimated_usage(tally)
                yield _event(_usage_chunk(last, computed))
            yield b"data: [DONE]\n\n"
        except ChatServiceError as exc:
            outcome, error = _outcome(exc), exc
            # Headers are gone already: the error travels as one event, then the stream ends.
            log.warning(
                "stream failed",
                extra={"model": self.route.name, "outcome": outcome, "error": exc.message},
            )
            yield _event(exc.body())
        except asyncio.CancelledError as exc:
            if self.streams is None or not self.streams.cutting or task is None:
                outcome, error = "cancelled", exc  # the client went away mid-stream
                raise
            task.uncancel()
            cut = shutdown_error()
            outcome, error = cut.outcome, cut
            log.warning("stream cut by the shutdown", extra={"model": self.route.name})
            yield _event(cut.body())
        except GeneratorExit as exc:
            outcome, error = "cancelled", exc
            raise
        except Exception as exc:
            outcome, error = "error", exc
            log.exception("stream failed", extra={"model": self.route.name})
            yield _event(error_body(INTERNAL_ERROR_MESSAGE, "server_error"))
        finally:
            if self.streams is not None and task is not None:
                self.streams.discard(task)
            await _close(chunks)
            self._count_usage(tally.usage or computed or self._estimated_usage(tally))
            self.finish_reasons = tally.finish_reasons
            if answer is not None:
                self.output_messages = answer.messages()
            self._finish(outcome, error)

    def _estimated_usage(self, tally: StreamTally) -> dict[str, Any]:
        if self.tokens is not None:
            return self._counted_usage(tally.answer_texts())
        return estimated_usage(estimate_prompt_tokens(self.payload), tally.content_chunks)

    def _counted_usage(self, answer: Iterable[str]) -> dict[str, Any]:
        assert self.tokens is not None  # noqa: S101 - only for routes with a tokenizer
        return estimated_usage(
            self.tokens.count(prompt_texts(self.payload)) + prompt_token_ids(self.payload),
            self.tokens.count(answer),
            "tokenizer",
        )

    def _count_usage(self, usage: Any) -> None:
        if not isinstance(usage, dict):
            return
        self.usage = usage
        record = context.current_record()
        estimated = usage.get("estimated") is True
        for kind in ("prompt", "completion"):
            tokens = usage.get(f"{kind}_tokens")
            if isinstance(tokens, int):
                if record is not None:
                    setattr(record, f"{kind}_tokens", tokens)
                if tokens > 0:
                    metrics.child(metrics.TOKENS, self.route.name, kind).inc(tokens)
                    if estimated:
                        metrics.child(metrics.ESTIMATED_TOKENS, self.route.name, kind).inc(tokens)

    def _finish(self, outcome: str, error: BaseException | None = None) -> None:
        model = self.route.name
        context.set_outcome(outcome)
        if isinstance(error, ChatServiceError) and error.from_upstream:
            metrics.child(metrics.UPSTREAM_ERRORS, model, error.failure_label).inc()
        overhead = time.perf_counter() - self.started - self.stats.upstream_seconds
        if self.route.backend != "echo":  # echo has no upstream: all of it is "overhead"
            metrics.observe_latency(metrics.GATEWAY_OVERHEAD, max(overhead, 0.0), model)
        response_model = self.stats.upstream_model or self.response_model
        self.span.end(
            outcome, response_model, self.usage, self.finish_reasons, self.output_messages
        )
        if self.admission is not None:
            self.admission.finished(
                outcome=outcome,
                status=_status(self.streaming, error),
                usage=self.usage,
                latency=time.perf_counter() - self.started,
                time_to_first_token=self.time_to_first_token,
                upstream=response_model,
            )


def _outcome(exc: BaseException) -> str:
    if isinstance(exc, asyncio.CancelledError | ClientDisconnectedError | GeneratorExit):
        return "cancelled"
    if isinstance(exc, ChatServiceError):
        return exc.outcome
    return "error"


def _status(streaming: bool, error: BaseException | None) -> int:
    """The status the client got: a stream's is 200 whatever ends it."""
    if streaming or error is None:
        return 200
    if isinstance(error, ChatServiceError):
        return error.status_code
    if isinstance(error, asyncio.CancelledError | ClientDisconnectedError | GeneratorExit):
        return 499
    return 500


def _finish_reasons(choices: Any) -> list[Any]:
    if not isinstance(choices, list):
        return []
    return [choice.get("finish_reason") for choice in choices if isinstance(choice, dict)]


def _usage_chunk(last: Payload, usage: dict[str, Any]) -> Payload:
    chunk: Payload = {key: last[key] for key in ("id", "object", "created", "model") if key in last}
    return {**chunk, "choices": [], "usage": usage}


def _event(payload: Payload) -> bytes:
    return b"data: " + orjson.dumps(payload) + b"\n\n"


async def _close(chunks: AsyncIterator[list[StreamEvent]]) -> None:
    aclose = getattr(chunks, "aclose", None)
    if aclose is not None:
        await aclose()
