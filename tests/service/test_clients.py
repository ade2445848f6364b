"""Popular OpenAI clients beside the official SDK: langchain-openai and litellm, against
ChatService on a loopback socket (echo, and the real llama.cpp upstream where it runs)."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from typing import Any

import pytest
from langchain_core.tools import tool
from langchain_openai import ChatOpenAI

from chatservice.config import ModelRoute
from tests.service.harness import ADMIN_KEY
from tests.service.llama_server import LlamaServer
from tests.service.test_llama_upstream import llama, serve_live, tiny_model, tiny_route

# litellm fetches a price list from the internet at import unless told to use its own copy.
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
import litellm  # after the variable, which it reads at import

__all__ = ["llama", "tiny_model"]  # fixtures, used by name

PROMPT = "tell me about the weather"


@tool
def get_weather(city: str) -> str:
    """The weather in a city."""
    return f"sunny in {city}"


@pytest.fixture
async def echo_service(pg_url: str) -> AsyncIterator[str]:
    async for url in serve_live(pg_url, [ModelRoute(name="echo")]):
        yield url + "/api/v1"


@pytest.fixture
async def llama_service(pg_url: str, llama: LlamaServer) -> AsyncIterator[str]:
    async for url in serve_live(pg_url, [tiny_route(llama)]):
        yield url + "/api/v1"


def chat_model(base_url: str, model: str, **options: Any) -> ChatOpenAI:
    return ChatOpenAI(base_url=base_url, api_key=ADMIN_KEY, model=model,
                      max_retries=0, timeout=30, **options)  # fmt: skip


async def test_langchain_invoke_and_stream(echo_service: str) -> None:
    model = chat_model(echo_service, "echo")
    answer = await model.ainvoke(PROMPT)
    assert answer.content == PROMPT
    assert answer.usage_metadata is not None
    assert answer.usage_metadata["output_tokens"] == len(PROMPT.split())
    chunks = [chunk async for chunk in model.astream(PROMPT)]
    assert "".join(str(c.content) for c in chunks) == PROMPT


@pytest.mark.llama_cpp
async def test_langchain_batch_honours_max_tokens_on_llama_cpp(llama_service: str) -> None:
    # langchain-openai sends `max_tokens` as `max_completion_tokens`, which llama.cpp ignores.
    model = chat_model(llama_service, "tiny", max_tokens=6, temperature=1.0)
    answers = await model.abatch([PROMPT, "hello", "what is new"])
    for answer in answers:
        assert answer.response_metadata["finish_reason"] == "length"
        assert answer.usage_metadata is not None
        assert answer.usage_metadata["output_tokens"] < 50  # not the ~2,000 of a full context


@pytest.mark.llama_cpp
async def test_langchain_bind_tools_gets_a_tool_call_from_llama_cpp(llama_service: str) -> None:
    model = chat_model(llama_service, "tiny", max_tokens=24, temperature=1.0)
    answer = await model.bind_tools([get_weather], tool_choice="get_weather").ainvoke(PROMPT)
    # Random weights write random arguments, cut at 24 tokens: langchain may call them invalid.
    calls = [*answer.tool_calls, *answer.invalid_tool_calls]
    assert [call["name"] for call in calls] == ["get_weather"]


async def test_litellm_completion_and_stream(echo_service: str) -> None:
    options = {"model": "openai/echo", "api_base": echo_service, "api_key": ADMIN_KEY,
               "messages": [{"role": "user", "content": PROMPT}]}  # fmt: skip
    response: Any = await litellm.acompletion(**options)
    assert response.choices[0].message.content == PROMPT
    assert response.usage.completion_tokens == len(PROMPT.split())
    stream: Any = await litellm.acompletion(**options, stream=True)
    text = "".join([chunk.choices[0].delta.content or "" async for chunk in stream])
    assert text == PROMPT


@pytest.mark.llama_cpp
async def test_litellm_stream_from_llama_cpp_gets_usage(llama_service: str) -> None:
    stream: Any = await litellm.acompletion(
        model="openai/tiny", api_base=llama_service, api_key=ADMIN_KEY, max_tokens=5,
        messages=[{"role": "user", "content": PROMPT}], stream=True,
        stream_options={"include_usage": True}, temperature=1.0,
    )  # fmt: skip
    chunks = [chunk async for chunk in stream]
    usage = [getattr(c, "usage", None) for c in chunks]
    assert any(u is not None and u.completion_tokens > 0 for u in usage)
