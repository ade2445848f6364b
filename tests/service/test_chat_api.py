"""The OpenAI wire contract of /api/v1, through the app on PostgreSQL."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import pytest

from tests.service.harness import AUTH, CHAT, sse_events
from tests.service.stub_upstream import StubUpstream


async def test_completion_is_an_openai_chat_completion(client: httpx.AsyncClient) -> None:
    response = await client.post(
        CHAT,
        headers=AUTH,
        json={"model": "echo", "messages": [{"role": "user", "content": "hello little world"}]},
    )
    assert response.status_code == 200
    body = response.json()
    assert body["object"] == "chat.completion"
    assert body["id"].startswith("chatcmpl-")
    assert body["model"] == "echo"
    assert body["choices"] == [
        {
            "index": 0,
            "message": {"role": "assistant", "content": "hello little world"},
            "logprobs": None,
            "finish_reason": "stop",
        }
    ]
    assert body["usage"] == {"prompt_tokens": 3, "completion_tokens": 3, "total_tokens": 6}
    assert response.headers["x-request-id"]


async def test_max_tokens_cuts_the_answer_with_finish_reason_length(
    client: httpx.AsyncClient,
) -> None:
    response = await client.post(
        CHAT,
        headers=AUTH,
        json={
            "model": "echo",
            "messages": [{"role": "user", "content": "one two three four"}],
            "max_completion_tokens": 2,
        },
    )
    choice = response.json()["choices"][0]
    assert choice["message"]["content"] == "one two"
    assert choice["finish_reason"] == "length"


async def test_stream_follows_the_chunk_contract(client: httpx.AsyncClient) -> None:
    response = await client.post(
        CHAT,
        headers=AUTH,
        json={
            "model": "echo",
            "stream": True,
            "stream_options": {"include_usage": True},
            "messages": [{"role": "user", "content": "stream me please"}],
        },
    )
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    events = sse_events(response.text)
    assert events[-1] == "[DONE]"
    chunks = events[:-1]
    assert {c["object"] for c in chunks} == {"chat.completion.chunk"}
    assert len({c["id"] for c in chunks}) == 1
    assert len({c["created"] for c in chunks}) == 1
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    content_chunks = [c for c in chunks if c["choices"]]
    assert [c["choices"][0]["finish_reason"] for c in content_chunks[:-1]] == [None] * (
        len(content_chunks) - 1
    )
    assert content_chunks[-1]["choices"][0]["finish_reason"] == "stop"
    text = "".join(c["choices"][0]["delta"].get("content", "") for c in content_chunks)
    assert text == "stream me please"
    assert chunks[-1]["choices"] == []
    assert chunks[-1]["usage"] == {"prompt_tokens": 3, "completion_tokens": 3, "total_tokens": 6}


async def test_stream_without_include_usage_has_no_usage_chunk(client: httpx.AsyncClient) -> None:
    response = await client.post(
        CHAT,
        headers=AUTH,
        json={"model": "echo", "stream": True, "messages": [{"role": "user", "content": "hi"}]},
    )
    chunks = sse_events(response.text)[:-1]
    assert all(c["choices"] for c in chunks)
    assert all("usage" not in c for c in chunks)


@pytest.mark.parametrize(
    ("patch", "param"),
    [
        ({"temperature": 2.5}, "temperature"),
        ({"top_p": -0.1}, "top_p"),
        ({"presence_penalty": 3}, "presence_penalty"),
        ({"frequency_penalty": -2.5}, "frequency_penalty"),
        ({"n": 0}, "n"),
        ({"max_tokens": 0}, "max_tokens"),
        ({"messages": []}, "messages"),
        ({"messages": [{"role": "wizard", "content": "x"}]}, "messages[0].role"),
        ({"model": ""}, "model"),
        ({"stop": ["a", "b", "c", "d", "e"]}, "stop"),
        ({"stop": []}, "stop"),
        ({"n": 129}, "n"),
        # Integers beyond the documented 64-bit bounds of known fields.
        ({"seed": 10**40}, "seed"),
        ({"seed": -(2**63) - 1}, "seed"),
        ({"max_tokens": 2**64}, "max_tokens"),
        # Strict types, as OpenAI: no coercion of strings or numbers.
        ({"stream": "true"}, "stream"),
        ({"stream_options": {"include_usage": 0}}, "stream_options.include_usage"),
        ({"temperature": "1.5"}, "temperature"),
        # Text parts need a string.
        (
            {"messages": [{"role": "user", "content": [{"type": "text", "text": 123}]}]},
            "messages[0].content[0].text",
        ),
        (
            {"messages": [{"role": "user", "content": [{"type": "text", "text": None}]}]},
            "messages[0].content[0].text",
        ),
        # Only an assistant turn may leave its content out (tool calls instead).
        ({"messages": [{"role": "user"}]}, "messages[0].content"),
        (
            {"messages": [{"role": "system", "content": "x"}, {"role": "user", "content": None}]},
            "messages[1].content",
        ),
    ],
)
async def test_invalid_fields_get_400_with_the_param(
    client: httpx.AsyncClient, patch: dict[str, Any], param: str
) -> None:
    body = {"model": "echo", "messages": [{"role": "user", "content": "hi"}], **patch}
    response = await client.post(CHAT, headers=AUTH, json=body)
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["type"] == "invalid_request_error"
    assert error["param"] == param
    assert param in error["message"]


async def test_integers_beyond_64_bits_in_free_form_fields_reach_the_upstream_exactly(
    client: httpx.AsyncClient, upstream: StubUpstream
) -> None:
    body = {
        "model": "upstream",
        "messages": [{"role": "user", "content": "x", "weight": 2**70}],
        "top_k": 10**40,
        "tools": [{"type": "function", "x": [1, -(10**30)]}],
    }
    response = await client.post(CHAT, headers=AUTH, json=body)
    assert response.status_code == 200
    sent = upstream.requests[0]
    assert sent["top_k"] == 10**40
    assert sent["tools"][0]["x"] == [1, -(10**30)]
    assert sent["messages"][0]["weight"] == 2**70


async def test_a_stop_string_may_be_longer_than_four_characters(
    client: httpx.AsyncClient,
) -> None:
    # LangChain and others send stop strings such as this one; the bound of 4 is the list's.
    body = {"model": "echo", "messages": [{"role": "user", "content": "one Human: two"}]}
    as_string = await client.post(CHAT, headers=AUTH, json={**body, "stop": "Human:"})
    assert as_string.status_code == 200
    assert as_string.json()["choices"][0]["message"]["content"] == "one"
    four = ["\n\nHuman:", "\n\nUser:", "###", "<|end|>"]
    as_list = await client.post(CHAT, headers=AUTH, json={**body, "stop": four})
    assert as_list.status_code == 200


async def test_n_is_capped_by_the_setting(open_client: Callable[..., Any]) -> None:
    body = {"model": "echo", "messages": [{"role": "user", "content": "hi"}]}
    async with open_client(max_n=4) as http:
        assert (await http.post(CHAT, headers=AUTH, json={**body, "n": 4})).status_code == 200
        refused = await http.post(CHAT, headers=AUTH, json={**body, "n": 5})
    assert refused.status_code == 400
    assert refused.json()["error"]["param"] == "n"


async def test_echo_answers_are_bounded_whatever_the_prompt(
    open_client: Callable[..., Any],
) -> None:
    body = {"model": "echo", "n": 128, "messages": [{"role": "user", "content": "w " * 50_000}]}
    async with open_client(echo_max_tokens=16) as http:
        response = await http.post(CHAT, headers=AUTH, json=body)
        streamed = await http.post(CHAT, headers=AUTH, json={**body, "stream": True})
    assert response.status_code == 200
    assert response.json()["usage"]["completion_tokens"] == 16 * 128
    assert {c["finish_reason"] for c in response.json()["choices"]} == {"length"}
    assert len(response.content) < 200_000
    assert len(streamed.content) < 2_000_000


async def test_missing_field_and_bad_json_are_400_envelopes(client: httpx.AsyncClient) -> None:
    missing = await client.post(CHAT, headers=AUTH, json={"model": "echo"})
    assert missing.status_code == 400
    assert missing.json()["error"]["param"] == "messages"

    broken = await client.post(
        CHAT, headers={**AUTH, "content-type": "application/json"}, content=b'{"model": '
    )
    assert broken.status_code == 400
    assert "not valid JSON" in broken.json()["error"]["message"]


@pytest.mark.parametrize(
    ("content", "content_type"),
    [
        (b"", "application/json"),
        (b'[{"model": "echo"}]', "application/json"),
        (b'{"model": "echo", "messages": [{"role": "user"}]}', "text/plain"),
        (b'{"model": "echo", "messages": [{"role": "user"}]}', None),
    ],
)
async def test_a_body_that_is_not_a_json_object_is_a_400_envelope(
    client: httpx.AsyncClient, content: bytes, content_type: str | None
) -> None:
    headers = {**AUTH, "content-type": content_type} if content_type else AUTH
    response = await client.post(CHAT, headers=headers, content=content)
    assert response.status_code == 400
    assert "must be a JSON object" in response.json()["error"]["message"]


async def test_a_json_suffix_media_type_is_json(client: httpx.AsyncClient) -> None:
    body = b'{"model": "echo", "messages": [{"role": "user", "content": "hi"}]}'
    headers = {**AUTH, "content-type": "application/vnd.api+json; charset=utf-8"}
    response = await client.post(CHAT, headers=headers, content=body)
    assert response.status_code == 200


async def test_unknown_model_is_404_model_not_found(client: httpx.AsyncClient) -> None:
    response = await client.post(
        CHAT, headers=AUTH, json={"model": "gpt-9", "messages": [{"role": "user", "content": "x"}]}
    )
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "model_not_found"
    assert response.json()["error"]["param"] == "model"


async def test_models_list_and_get(client: httpx.AsyncClient) -> None:
    listed = await client.get("/api/v1/models", headers=AUTH)
    assert listed.status_code == 200
    assert listed.json()["object"] == "list"
    assert [m["id"] for m in listed.json()["data"]] == ["echo", "upstream"]
    assert all(m["object"] == "model" for m in listed.json()["data"])

    one = await client.get("/api/v1/models/upstream", headers=AUTH)
    assert one.json()["id"] == "upstream"
    missing = await client.get("/api/v1/models/org/nope", headers=AUTH)
    assert missing.status_code == 404
    assert missing.json()["error"]["code"] == "model_not_found"


async def test_unknown_url_and_wrong_method_use_the_envelope(client: httpx.AsyncClient) -> None:
    unknown = await client.get("/api/v1/nothing-here")
    assert unknown.status_code == 404
    assert unknown.json()["error"]["code"] == "unknown_url"
    wrong = await client.get(CHAT, headers=AUTH)
    assert wrong.status_code == 405
    assert wrong.json()["error"]["type"] == "invalid_request_error"


async def test_openapi_schema_documents_ranges_and_examples(client: httpx.AsyncClient) -> None:
    schema = (await client.get("/api/v1/openapi.json")).json()
    request = schema["components"]["schemas"]["ChatCompletionRequest"]
    temperature = next(
        branch for branch in request["properties"]["temperature"]["anyOf"] if "maximum" in branch
    )
    assert (temperature["minimum"], temperature["maximum"]) == (0, 2)
    assert request["examples"][0]["model"] == "echo"
