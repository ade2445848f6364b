"""The `openai` backend against a real OpenAI-compatible server on loopback."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp
import httpx
import pytest

from chatservice.config import ModelRoute
from chatservice.main import create_app
from tests.ports import free_port
from tests.service.harness import (
    AUTH,
    CHAT,
    Served,
    make_settings,
    serve_on_loopback,
    sse_events,
)
from tests.service.stub_upstream import REPLY, StubUpstream

ASK = {"model": "upstream", "messages": [{"role": "user", "content": "hi"}]}


async def test_json_pass_through_uses_the_upstream_model_and_keeps_unknown_fields(
    client: httpx.AsyncClient, upstream: StubUpstream
) -> None:
    response = await client.post(CHAT, headers=AUTH, json={**ASK, "top_k": 7, "seed": 3})
    assert response.status_code == 200
    body = response.json()
    assert body["choices"][0]["message"]["content"] == REPLY
    assert body["model"] == "upstream"  # the public name, not the upstream's
    sent = upstream.requests[0]
    assert sent["model"] == "stub-model-v1"
    assert sent["top_k"] == 7
    assert sent["seed"] == 3
    assert upstream.headers[0]["Authorization"] == "Bearer sk-upstream-secret"


async def test_a_key_read_from_a_file_with_its_newline_is_sent_without_it(
    open_client: Callable[..., Served], upstream: StubUpstream, monkeypatch: pytest.MonkeyPatch
) -> None:
    # `kubectl create secret --from-file` keeps the file's last newline in the variable.
    monkeypatch.setenv("TEST_UPSTREAM_KEY", "sk-from-a-file\n")
    route = ModelRoute(
        name="upstream",
        backend="openai",
        base_url=upstream.base_url,
        upstream_model="stub-model-v1",
        api_key_env="TEST_UPSTREAM_KEY",
    )
    async with open_client(models=[route]) as http:
        response = await http.post(CHAT, headers=AUTH, json=ASK)
    assert response.status_code == 200
    assert upstream.headers[0]["Authorization"] == "Bearer sk-from-a-file"


async def test_stream_pass_through(client: httpx.AsyncClient, upstream: StubUpstream) -> None:
    response = await client.post(CHAT, headers=AUTH, json={**ASK, "stream": True})
    events = sse_events(response.text)
    assert events[-1] == "[DONE]"
    text = "".join(c["choices"][0]["delta"].get("content", "") for c in events[:-1])
    assert text == REPLY
    assert {c["model"] for c in events[:-1]} == {"upstream"}
    # Usage is always requested upstream (for the token metrics) but not shown unasked.
    assert upstream.requests[0]["stream_options"] == {"include_usage": True}
    assert all(c["choices"] for c in events[:-1])


@pytest.mark.parametrize("status", [429, 502, 503])
async def test_retryable_statuses_are_retried_before_the_first_byte(
    client: httpx.AsyncClient, upstream: StubUpstream, status: int
) -> None:
    upstream.plan[:] = [f"status:{status}", f"status:{status}"]
    response = await client.post(CHAT, headers=AUTH, json=ASK)
    assert response.status_code == 200
    assert len(upstream.requests) == 3


async def test_retries_give_up_with_the_mapped_status(
    client: httpx.AsyncClient, upstream: StubUpstream
) -> None:
    upstream.plan[:] = ["status:503"] * 3
    response = await client.post(CHAT, headers=AUTH, json=ASK)
    assert response.status_code == 502
    assert response.json()["error"]["type"] == "upstream_error"
    assert len(upstream.requests) == 3

    upstream.reset()
    upstream.plan[:] = ["status:429"] * 3
    limited = await client.post(CHAT, headers=AUTH, json=ASK)
    assert limited.status_code == 429
    assert limited.json()["error"]["type"] == "rate_limit_error"


async def test_upstream_client_errors_pass_through_without_retry(
    client: httpx.AsyncClient, upstream: StubUpstream
) -> None:
    upstream.plan[:] = ["status:400"]
    response = await client.post(CHAT, headers=AUTH, json=ASK)
    assert response.status_code == 400
    assert response.json()["error"]["message"] == "stub says 400"
    assert response.json()["error"]["param"] == "messages"
    assert len(upstream.requests) == 1


async def test_upstream_500_is_a_502_that_hides_the_upstream(
    client: httpx.AsyncClient, upstream: StubUpstream
) -> None:
    upstream.plan[:] = ["status:500"]
    response = await client.post(CHAT, headers=AUTH, json=ASK)
    assert response.status_code == 502
    assert str(upstream.port) not in response.text
    assert len(upstream.requests) == 1


async def test_first_byte_timeout_is_504(client: httpx.AsyncClient, upstream: StubUpstream) -> None:
    upstream.plan[:] = ["slow_headers"]
    response = await client.post(CHAT, headers=AUTH, json=ASK)
    assert response.status_code == 504
    assert response.json()["error"]["type"] == "timeout_error"
    assert len(upstream.requests) == 1  # a timeout may mean work started: no retry


async def test_stalled_stream_ends_with_one_error_event(
    client: httpx.AsyncClient, upstream: StubUpstream
) -> None:
    upstream.plan[:] = ["stall_stream"]
    response = await client.post(CHAT, headers=AUTH, json={**ASK, "stream": True})
    assert response.status_code == 200
    events = sse_events(response.text)
    assert events[0]["choices"][0]["delta"]["role"] == "assistant"
    assert events[-1]["error"]["type"] == "timeout_error"
    assert "[DONE]" not in events


async def test_broken_stream_is_not_retried_after_the_first_byte(
    client: httpx.AsyncClient, upstream: StubUpstream
) -> None:
    upstream.plan[:] = ["drop_stream"]
    response = await client.post(CHAT, headers=AUTH, json={**ASK, "stream": True})
    events = sse_events(response.text)
    assert events[-1]["error"]["type"] == "upstream_error"
    assert len(upstream.requests) == 1


async def test_unreachable_upstream_is_502(open_client: Callable[..., Any]) -> None:
    closed = f"http://127.0.0.1:{free_port()}/v1"
    route = ModelRoute(name="upstream", backend="openai", base_url=closed)
    async with open_client(models=[route]) as http:
        response = await http.post(CHAT, headers=AUTH, json=ASK)
    assert response.status_code == 502
    assert response.json()["error"]["message"] == "Could not reach the upstream for `upstream`."
    assert closed not in response.text


@pytest.fixture
async def live_service(pg_url: str, upstream: StubUpstream) -> AsyncIterator[str]:
    """The app on a real loopback socket (uvicorn), for what needs real connections."""
    app = create_app(make_settings(pg_url, upstream))
    async with serve_on_loopback(app) as url:
        yield url


async def test_client_disconnect_mid_stream_cancels_the_upstream_request(
    live_service: str, upstream: StubUpstream
) -> None:
    upstream.plan[:] = ["slow_stream"]
    async with aiohttp.ClientSession() as session:
        async with session.post(
            live_service + CHAT, headers=AUTH, json={**ASK, "stream": True}
        ) as response:
            assert response.status == 200
            await response.content.readline()
    # The upstream learns within a moment, long before its 10 s stream would have ended.
    assert await asyncio.to_thread(upstream.disconnected.wait, 3)


async def test_client_disconnect_while_waiting_cancels_the_upstream_request(
    live_service: str, upstream: StubUpstream
) -> None:
    upstream.plan[:] = ["slow_body"]
    host, port = live_service.removeprefix("http://").split(":")
    body = httpx.Request("POST", live_service + CHAT, headers=AUTH, json=ASK).read()
    request = (
        f"POST {CHAT} HTTP/1.1\r\nHost: {host}\r\nAuthorization: {AUTH['Authorization']}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode() + body
    with socket.create_connection((host, int(port))) as sock:
        sock.sendall(request)
        while not upstream.requests:  # noqa: ASYNC110 - the stub runs in its own thread
            await asyncio.sleep(0.02)
    assert await asyncio.to_thread(upstream.disconnected.wait, 3)
