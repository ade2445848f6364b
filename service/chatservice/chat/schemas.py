"""Request and response shapes of `POST /chat/completions`, as in OpenAI's specification.

Fields this service does not know are kept and passed to the upstream unchanged, so new
OpenAI parameters and server-specific ones (vLLM's `top_k`, ...) work without a release.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, Self

import orjson
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    WithJsonSchema,
    field_validator,
    model_validator,
)

from chatservice.errors import InvalidRequestError

Role = Literal["system", "developer", "user", "assistant", "tool", "function"]
# JSON integers the upstream encoder (orjson) can write: signed 64-bit up to unsigned 64-bit.
INT_MIN, INT_MAX = -(2**63), 2**64 - 1
# A signed 64-bit integer, bounded by a round figure just inside ±2**63: readers of the JSON
# Schema that hold numbers as doubles (generators, JavaScript) read it back unchanged.
INT64_BOUND = 9_223_372_036_854_774_000


def _whole_number(value: Any) -> Any:
    # JSON Schema counts 2.0 as an integer (and generators send it); strings stay refused.
    return int(value) if isinstance(value, float) and value.is_integer() else value


# Strict like every field here, except that an integral number may be written `2.0`. (The
# bounds come before the validator, or the JSON Schema gets pydantic's names for them.)
WholeNumber = BeforeValidator(_whole_number)
Int64 = Annotated[int, Field(ge=-INT64_BOUND, le=INT64_BOUND), WholeNumber]
PositiveInt64 = Annotated[int, Field(ge=1, le=INT64_BOUND), WholeNumber]
MAX_STOP_SEQUENCES = 4  # OpenAI's bound on a list of stop sequences
_STOP_SCHEMA = {
    "anyOf": [
        {"type": "string"},
        {
            "type": "array",
            "items": {"type": "string"},
            "minItems": 1,
            "maxItems": MAX_STOP_SEQUENCES,
        },
        {"type": "null"},
    ],
    "description": "One stop sequence of any length, or a list of 1 to 4.",
}


class ChatMessage(BaseModel):
    # Strict, as OpenAI is: `"stream": "true"` or `"temperature": "1.5"` is an error, not a
    # value to coerce.
    model_config = ConfigDict(extra="allow", strict=True)

    role: Role
    content: str | list[dict[str, Any]] | None = None
    name: str | None = None
    tool_calls: list[dict[str, Any]] | None = None
    tool_call_id: str | None = None


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="allow", strict=True)

    include_usage: bool = False


class ChatCompletionRequest(BaseModel):
    model_config = ConfigDict(
        extra="allow",
        strict=True,
        json_schema_extra={
            "examples": [
                {
                    "model": "echo",
                    "messages": [
                        {"role": "system", "content": "You are terse."},
                        {"role": "user", "content": "Say hello"},
                    ],
                    "temperature": 0.2,
                    "max_tokens": 64,
                },
                {
                    "model": "echo",
                    "messages": [{"role": "user", "content": "Stream this"}],
                    "stream": True,
                    "stream_options": {"include_usage": True},
                },
            ]
        },
    )

    model: str = Field(min_length=1, examples=["echo"])
    messages: list[ChatMessage] = Field(min_length=1)
    temperature: float | None = Field(default=None, ge=0, le=2)
    top_p: float | None = Field(default=None, ge=0, le=1)
    n: Annotated[int, Field(ge=1, le=128), WholeNumber] | None = None
    stop: Annotated[str | list[str] | None, WithJsonSchema(_STOP_SCHEMA)] = None
    max_tokens: PositiveInt64 | None = None
    max_completion_tokens: PositiveInt64 | None = None
    presence_penalty: float | None = Field(default=None, ge=-2, le=2)
    frequency_penalty: float | None = Field(default=None, ge=-2, le=2)
    logit_bias: dict[str, float] | None = None
    seed: Int64 | None = None
    user: str | None = None
    tools: list[dict[str, Any]] | None = None
    tool_choice: str | dict[str, Any] | None = None
    parallel_tool_calls: bool | None = None
    response_format: dict[str, Any] | None = None
    logprobs: bool | None = None
    top_logprobs: Annotated[int, Field(ge=0, le=20), WholeNumber] | None = None
    stream: bool = False
    stream_options: StreamOptions | None = None

    @field_validator("stop")
    @classmethod
    def _stop_list_bounds(cls, stop: str | list[str] | None) -> str | list[str] | None:
        # The bound is on the list; a single stop string may be of any length.
        if isinstance(stop, list) and not 1 <= len(stop) <= MAX_STOP_SEQUENCES:
            raise ValueError(f"a list of stop sequences must have 1 to {MAX_STOP_SEQUENCES} items")
        return stop

    @model_validator(mode="after")
    def _check_free_form_fields(self) -> Self:
        # Raised as the service's own error (pydantic passes it through), so the parameter is
        # the exact path inside the content.
        for index, message in enumerate(self.messages):
            # Only an assistant turn may come without content (its tool calls say it all), as
            # OpenAI has it; a user turn without any would reach the model as nothing.
            if message.content is None and message.role != "assistant":
                raise InvalidRequestError(
                    f"Missing required parameter: 'messages[{index}].content'.",
                    param=f"messages[{index}].content",
                    code="missing_required_parameter",
                )
            if isinstance(message.content, list):
                _check_content_parts(message.content, f"messages[{index}].content")
                _keep_big_integers(message.content)
            _keep_big_integers(message.tool_calls)
            _keep_big_integers(message.__pydantic_extra__)
        _keep_big_integers(self.tools)
        _keep_big_integers(self.tool_choice)
        _keep_big_integers(self.response_format)
        if self.stream_options is not None:
            _keep_big_integers(self.stream_options.__pydantic_extra__)
        _keep_big_integers(self.__pydantic_extra__)
        return self

    def upstream_payload(self) -> dict[str, Any]:
        """What the backend receives: every field the client set, unknown ones included."""
        return self.model_dump(exclude_unset=True, exclude_none=True)


def _check_content_parts(parts: list[dict[str, Any]], where: str) -> None:
    for index, part in enumerate(parts):
        if part.get("type") == "text" and not isinstance(part.get("text"), str):
            raise InvalidRequestError(
                f"Invalid value for '{where}[{index}].text': a text part needs a string `text`.",
                param=f"{where}[{index}].text",
                code="invalid_value",
            )


def _keep_big_integers(value: Any) -> None:
    """Free-form JSON is passed upstream as it came, and any JSON integer is valid there; the
    upstream encoder (orjson) writes at most 64 bits, so larger ones go as raw JSON text."""
    if isinstance(value, dict):
        for key, item in value.items():
            if _is_big_integer(item):
                value[key] = orjson.Fragment(str(item).encode())
            else:
                _keep_big_integers(item)
    elif isinstance(value, list):
        for index, item in enumerate(value):
            if _is_big_integer(item):
                value[index] = orjson.Fragment(str(item).encode())
            else:
                _keep_big_integers(item)


def _is_big_integer(value: Any) -> bool:
    return type(value) is int and not INT_MIN <= value <= INT_MAX


class Usage(BaseModel):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class AssistantMessage(BaseModel):
    model_config = ConfigDict(extra="allow")

    role: Literal["assistant"] = "assistant"
    content: str | None = None


class Choice(BaseModel):
    model_config = ConfigDict(extra="allow")

    index: int
    message: AssistantMessage
    finish_reason: str | None
    logprobs: dict[str, Any] | None = None


class ChatCompletion(BaseModel):
    """A `chat.completion` object (documentation of the response; upstream extras pass)."""

    model_config = ConfigDict(extra="allow")

    id: str
    object: Literal["chat.completion"] = "chat.completion"
    created: int
    model: str
    choices: list[Choice]
    usage: Usage | None = None
