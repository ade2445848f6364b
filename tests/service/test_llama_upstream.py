"""ChatService in front of a real third-party upstream: llama-cpp-python's server with a tiny
random-weight model, compared with calls made to that server directly."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from tokenizers import Tokenizer

from chatservice.config import ModelRoute, UpstreamEndpoint
from chatservice.main import create_app
from tests.service.harness import AUTH, CHAT, make_settings, serve_on_loopback, sse_events
from tests.service.llama_server import MODEL_ALIAS, LlamaServer, require_llama_cpp
from tests.service.tiny_gguf import write_tiny_llama
from tests.service.tiny_tokenizer import write_tiny_tokenizer

pytestmark = pytest.mark.llama_cpp

# Greedy decoding: the same request gives the same tokens, directly or through the service.
GREEDY = {"temperature": 0, "seed": 7, "top_k": 1}
ASK = {"messages": [{"role": "user", "content": "hello world"}], "max_tokens": 12, **GREEDY}
WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The weather in a city.",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                       "required": ["city"]},
    },
}  # fmt: skip
FORCE_WEATHER = {"type": "function", "function": {"name": "get_weather"}}


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    require_llama_cpp()
    return write_tiny_llama(tmp_path_factory.mktemp("gguf") / "tiny-llama.gguf")


def _server(model: Path, directory: Path, api_key: str | None = None) -> Iterator[LlamaServer]:
    server = LlamaServer(model, directory / "llama-server.log", api_key)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def llama(tiny_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LlamaServer]:
    yield from _server(tiny_model, tmp_path_factory.mktemp("llama"))


@pytest.fixture
def own_llama(tiny_model: Path, tmp_path: Path) -> Iterator[LlamaServer]:
    """A server of this test's own, for tests that kill it."""
    yield from _server(tiny_model, tmp_path)


def tiny_route(server: LlamaServer, **fields: Any) -> ModelRoute:
    return ModelRoute(name="tiny", backend="openai", base_url=server.base_url,
                      upstream_model=MODEL_ALIAS, **fields)  # fmt: skip


async def serve_live(
    pg_url: str, routes: list[ModelRoute], **overrides: object
) -> AsyncIterator[str]:
    """ChatService on a real loopback socket (uvicorn), in front of the given routes."""
    timeouts = {"upstream_first_byte_timeout": 30.0, "upstream_chunk_timeout": 10.0,
                "upstream_total_timeout": 60.0}  # fmt: skip
    settings = make_settings(pg_url, None, models=routes, **timeouts, **overrides)
    async with serve_on_loopback(create_app(settings)) as url:
        yield url


@pytest.fixture
async def service(pg_url: str, llama: LlamaServer) -> AsyncIterator[str]:
    async for url in serve_live(pg_url, [ModelRoute(name="echo"), tiny_route(llama)]):
        yield url


async def _pair(
    service: str, llama: LlamaServer, body: dict[str, Any]
) -> tuple[httpx.Response, httpx.Response]:
    async with httpx.AsyncClient(timeout=60) as http:
        direct = await http.post(
            llama.base_url + "/chat/completions", json={**body, "model": MODEL_ALIAS}
        )
        through = await http.post(service + CHAT, headers=AUTH, json={**body, "model": "tiny"})
    return direct, through


async def test_json_matches_a_direct_call_field_by_field(service: str, llama: LlamaServer) -> None:
    direct, through = await _pair(service, llama, ASK)
    assert (direct.status_code, through.status_code) == (200, 200)
    mine, theirs = through.json(), direct.json()
    assert mine["model"] == "tiny"
    assert mine["choices"] == theirs["choices"]
    assert mine["usage"] == theirs["usage"]  # the upstream's own count, passed on
    assert set(mine) == set(theirs)
    assert {k: mine[k] for k in ("object", "id")} == {k: theirs[k] for k in ("object", "id")} | {
        "id": mine["id"]
    }


async def test_stream_matches_a_direct_call_and_gets_the_usage_it_asked_for(
    service: str, llama: LlamaServer
) -> None:
    body = {**ASK, "stream": True, "stream_options": {"include_usage": True}}
    direct, through = await _pair(service, llama, body)
    theirs, mine = sse_events(direct.text), sse_events(through.text)
    assert theirs[-1] == mine[-1] == "[DONE]"
    assert all("usage" not in e for e in theirs[:-1]), "llama.cpp now sends usage: adapt"
    assert [c["choices"] for c in mine[:-2]] == [c["choices"] for c in theirs[:-1]]
    usage = mine[-2]
    assert usage["choices"] == []
    assert usage["usage"]["estimated"] is True
    content_chunks = [c for c in theirs[:-1] if c["choices"][0]["delta"].get("content")]
    assert usage["usage"]["completion_tokens"] == len(content_chunks)
    assert usage["usage"]["prompt_tokens"] > 0


async def test_max_completion_tokens_is_honoured(service: str, llama: LlamaServer) -> None:
    body = {"messages": ASK["messages"], "max_completion_tokens": 6, **GREEDY}
    direct, through = await _pair(service, llama, body)
    # llama.cpp ignores the field when it is sent as is, and generates far past the limit.
    assert direct.json()["usage"]["completion_tokens"] > 50
    answer = through.json()
    assert answer["choices"][0]["finish_reason"] == "length"
    assert answer["usage"]["completion_tokens"] <= 8


async def test_tool_call_deltas_are_passed_through(service: str, llama: LlamaServer) -> None:
    body = {**ASK, "max_tokens": 24, "stream": True, "tools": [WEATHER_TOOL],
            "tool_choice": FORCE_WEATHER}  # fmt: skip
    direct, through = await _pair(service, llama, body)
    theirs, mine = _tool_calls(sse_events(direct.text)), _tool_calls(sse_events(through.text))
    assert mine, "no tool-call deltas came through"
    assert mine[0]["function"]["name"] == "get_weather"
    assert [c["function"] for c in mine] == [c["function"] for c in theirs]
    assert sse_events(through.text)[-2]["choices"][0]["finish_reason"] == "tool_calls"


async def test_a_tokenizer_counts_the_streamed_tool_call(
    pg_url: str, llama: LlamaServer, tmp_path: Path
) -> None:
    tokenizer = write_tiny_tokenizer(tmp_path / "tokenizer.json")
    body = {**ASK, "model": "tiny", "max_tokens": 24, "stream": True, "tools": [WEATHER_TOOL],
            "tool_choice": FORCE_WEATHER, "stream_options": {"include_usage": True}}  # fmt: skip
    async for url in serve_live(pg_url, [tiny_route(llama, tokenizer=tokenizer)]):
        async with httpx.AsyncClient(base_url=url, timeout=60) as http:
            events = sse_events((await http.post(CHAT, headers=AUTH, json=body)).text)
    calls = _tool_calls(events)
    assert calls, "no tool-call deltas came through"
    # One call: its name, then its arguments as they were streamed, piece by piece.
    streamed = "".join(
        (c["function"].get("name") or "") + (c["function"].get("arguments") or "") for c in calls
    )
    usage = events[-2]["usage"]
    assert usage["usage_source"] == "tokenizer"
    expected = len(Tokenizer.from_file(str(tokenizer)).encode(streamed, add_special_tokens=False))
    assert usage["completion_tokens"] == expected
    assert usage["prompt_tokens"] == 2  # "hello world"; llama.cpp's template tokens are not


def _tool_calls(events: list[Any]) -> list[dict[str, Any]]:
    return [
        call
        for event in events[:-1]
        for choice in event["choices"]
        for call in choice["delta"].get("tool_calls") or ()
    ]


async def test_a_500_with_a_reason_is_logged_and_explained(
    service: str, llama: LlamaServer, caplog: pytest.LogCaptureFixture
) -> None:
    # This llama-cpp-python rejects `json_schema` response formats with a 500 and the reason.
    schema = {"name": "x", "schema": {"type": "object"}}
    body = {**ASK, "response_format": {"type": "json_schema", "json_schema": schema}}
    with caplog.at_level(logging.WARNING, logger="chatservice.upstream"):
        direct, through = await _pair(service, llama, body)
    assert direct.status_code == 500
    assert through.status_code == 502
    error = through.json()["error"]
    assert error["code"] == "upstream_server_error"
    assert through.headers["x-request-id"] in error["message"]
    assert "site-packages" not in through.text  # llama.cpp's text names its source files
    logged = [r for r in caplog.records if getattr(r, "upstream_status", None) == 500]
    assert "json_schema" in logged[0].upstream_body  # type: ignore[attr-defined]


async def test_a_killed_server_mid_stream_ends_with_one_error_event(
    pg_url: str, own_llama: LlamaServer
) -> None:
    events: list[Any] = []
    async for url in serve_live(pg_url, [tiny_route(own_llama)]):
        # Sampled, not greedy: greedy decoding of random weights can settle on byte tokens
        # that never form UTF-8, and llama-cpp-python sends nothing while they do not.
        body = {"model": "tiny", "messages": ASK["messages"], "max_tokens": 2000,
                "stream": True, "temperature": 1.0, "seed": 3}  # fmt: skip
        async with httpx.AsyncClient(timeout=60) as http:
            async with http.stream("POST", url + CHAT, headers=AUTH, json=body) as response:
                async for line in response.aiter_lines():
                    if line.startswith("data: "):
                        events.append(line[len("data: ") :])
                        if len(events) == 2:
                            await asyncio.to_thread(own_llama.kill)
    assert "[DONE]" not in events
    errors = [json.loads(e)["error"] for e in events if '"error"' in e]
    assert len(errors) == 1
    assert errors[0]["code"] in ("upstream_stream_broken", "upstream_stream_truncated")


async def test_health_checks_the_key_and_the_model_list(
    pg_url: str, tiny_model: Path, tmp_path: Path
) -> None:
    for server in _server(tiny_model, tmp_path, api_key="sk-llama-right"):
        routes = [
            tiny_route(server, api_key="sk-llama-right"),
            ModelRoute(name="wrong-key", backend="openai", base_url=server.base_url,
                       upstream_model=MODEL_ALIAS, api_key="sk-llama-wrong"),
            ModelRoute(name="wrong-model", backend="openai", base_url=server.base_url,
                       upstream_model="not-served", api_key="sk-llama-right"),
        ]  # fmt: skip
        async for url in serve_live(pg_url, routes):
            async with httpx.AsyncClient(timeout=30) as http:
                report = await http.get(url + "/api/v1/health/")
    backends = report.json()["backends"]
    assert report.status_code == 200
    assert backends["tiny"]["status"] == "ok"
    assert backends["wrong-key"]["status"] == "degraded"
    assert "refused" in backends["wrong-key"]["error"]
    assert backends["wrong-model"]["status"] == "degraded"
    assert "not-served" in backends["wrong-model"]["error"]


async def test_a_route_with_a_dead_endpoint_serves_from_the_real_one_and_relays_completions(
    pg_url: str, llama: LlamaServer
) -> None:
    # Two endpoints, one of them down (nothing listens on port 1): every request is answered by
    # llama.cpp, the dead one is retried around and then ejected; the legacy completions API
    # goes through the same pool and answers as llama.cpp does directly.
    # Weighted to be picked first: it is tried, and ejected, for certain.
    dead = UpstreamEndpoint(base_url="http://127.0.0.1:1/v1", weight=100)
    pool = ModelRoute(
        name="pool",
        backend="openai",
        upstream_model=MODEL_ALIAS,
        endpoints=(dead, UpstreamEndpoint(base_url=llama.base_url)),
    )
    # Ejected at its first failure, for a long cooldown: the health below is certain.
    ejecting = {"endpoint_failures_to_eject": 1, "endpoint_cooldown": 60.0}
    async for service in serve_live(pg_url, [pool], **ejecting):
        async with httpx.AsyncClient(timeout=60) as http:
            answers = [
                await http.post(service + CHAT, headers=AUTH, json={**ASK, "model": "pool"})
                for _ in range(12)
            ]
            assert [a.status_code for a in answers] == [200] * 12
            assert {a.headers["x-chatservice-upstream"] for a in answers} == {"pool/1"}
            health = (await http.get(f"{service}/api/v1/models/pool", headers=AUTH)).json()
            assert health["endpoints"] == {"total": 2, "healthy": 1}

            prompt = {"prompt": "hello world", "max_tokens": 8, **GREEDY}
            direct = await http.post(
                llama.base_url + "/completions", json={**prompt, "model": MODEL_ALIAS}
            )
            through = await http.post(
                f"{service}/api/v1/completions", headers=AUTH, json={**prompt, "model": "pool"}
            )
    assert (direct.status_code, through.status_code) == (200, 200), through.text
    assert through.json()["model"] == "pool"
    assert through.json()["choices"][0]["text"] == direct.json()["choices"][0]["text"]
    assert through.json()["usage"] == direct.json()["usage"]
