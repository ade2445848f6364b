"""What clients, metrics and health see when an upstream misbehaves (a loopback stub)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp
import httpx
import pytest
from prometheus_client import REGISTRY

from chatservice.config import ModelRoute
from chatservice.inference import openai_compatible
from chatservice.main import create_app
from tests.service.harness import AUTH, CHAT, make_settings, serve_on_loopback, sse_events
from tests.service.stub_upstream import ACCOUNT_DETAILS, StubUpstream

ASK = {"model": "upstream", "messages": [{"role": "user", "content": "hi"}]}
STREAM = {**ASK, "stream": True}
REPORT = "/api/v1/health/"


def completions(model: str, stream: str, outcome: str) -> float:
    labels = {"model": model, "stream": stream, "outcome": outcome}
    return REGISTRY.get_sample_value("chatservice_chat_completions_total", labels) or 0.0


def tokens(kind: str, metric: str = "chatservice_tokens_total") -> float:
    return REGISTRY.get_sample_value(metric, {"model": "upstream", "kind": kind}) or 0.0


@pytest.mark.parametrize("status", [401, 403])
async def test_upstream_refusing_our_key_is_a_502_without_its_text(
    client: httpx.AsyncClient, upstream: StubUpstream, status: int
) -> None:
    before = completions("upstream", "false", "upstream_auth_failed")
    upstream.plan[:] = [f"status:{status}"]
    response = await client.post(CHAT, headers=AUTH, json=ASK)
    assert response.status_code == 502
    error = response.json()["error"]
    assert error["code"] == "upstream_authentication_failed"
    assert error["type"] == "upstream_error"
    for secret in ("org-stub0rg", "sk-upst", "stub says"):
        assert secret not in response.text
    assert completions("upstream", "false", "upstream_auth_failed") == before + 1


async def test_upstream_rate_limit_text_is_not_relayed(
    client: httpx.AsyncClient, upstream: StubUpstream
) -> None:
    upstream.plan[:] = ["status:429"] * 3
    response = await client.post(CHAT, headers=AUTH, json=ASK)
    assert response.status_code == 429
    assert response.json()["error"]["type"] == "rate_limit_error"
    assert ACCOUNT_DETAILS.split(",")[0] not in response.text
    assert "sk-upst" not in response.text


async def test_upstream_500_tells_the_client_where_the_reason_is(
    client: httpx.AsyncClient, upstream: StubUpstream
) -> None:
    upstream.plan[:] = ["status:500"]
    response = await client.post(CHAT, headers=AUTH, json=ASK)
    assert response.status_code == 502
    error = response.json()["error"]
    assert error["code"] == "upstream_server_error"
    assert "status 500" in error["message"]
    assert response.headers["x-request-id"] in error["message"]
    assert "stub says" not in response.text


@pytest.mark.parametrize(
    ("body", "outcome"),
    [
        ("[1,2]", "upstream_invalid_response"),
        ("null", "upstream_invalid_response"),
        ('{"foo": 1}', "upstream_invalid_response"),
        ("not json", "upstream_invalid_response"),
        ('{"choices": []}', "upstream_invalid_response"),
        ('{"error": {"message": "model crashed"}}', "upstream_error"),
    ],
)
async def test_a_2xx_body_that_is_not_a_chat_completion_is_a_502(
    client: httpx.AsyncClient, upstream: StubUpstream, body: str, outcome: str
) -> None:
    before = completions("upstream", "false", outcome)
    upstream.plan[:] = [f"body:{body}"]
    response = await client.post(CHAT, headers=AUTH, json=ASK)
    assert response.status_code == 502
    assert response.json()["error"]["type"] == "upstream_error"
    assert "model crashed" not in response.text
    assert completions("upstream", "false", outcome) == before + 1


async def test_an_answer_larger_than_the_bound_is_a_502_and_the_next_request_is_served(
    client: httpx.AsyncClient, upstream: StubUpstream, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(openai_compatible, "MAX_BODY_BYTES", 64 * 1024)  # the real one: 256 MiB
    upstream.plan[:] = ["body:" + " " * 200 * 1024 + "{}"]
    response = await client.post(CHAT, headers=AUTH, json=ASK)
    assert response.status_code == 502
    error = response.json()["error"]
    assert error["code"] == "upstream_invalid_response"
    assert "larger than 65536 bytes" in error["message"]
    assert (await client.post(CHAT, headers=AUTH, json=ASK)).status_code == 200


async def test_a_stalled_json_body_times_out_at_the_chunk_timeout(
    open_client: Callable[..., Any], upstream: StubUpstream
) -> None:
    upstream.plan[:] = ["slow_body"]
    async with open_client(upstream_chunk_timeout=0.5, upstream_total_timeout=30) as http:
        started = time.monotonic()
        response = await http.post(CHAT, headers=AUTH, json=ASK)
    assert response.status_code == 504
    assert time.monotonic() - started < 5


async def test_a_stream_without_finish_reason_is_an_upstream_failure(
    client: httpx.AsyncClient, upstream: StubUpstream
) -> None:
    before = completions("upstream", "true", "upstream_error")
    upstream.plan[:] = ["unfinished_stream"]
    response = await client.post(CHAT, headers=AUTH, json=STREAM)
    events = sse_events(response.text)
    assert "[DONE]" not in events
    assert [e["error"]["code"] for e in events if "error" in e] == ["upstream_stream_truncated"]
    assert completions("upstream", "true", "upstream_error") == before + 1


async def test_a_stream_cut_mid_way_says_so(
    client: httpx.AsyncClient, upstream: StubUpstream
) -> None:
    upstream.plan[:] = ["drop_stream"]
    response = await client.post(CHAT, headers=AUTH, json=STREAM)
    error = sse_events(response.text)[-1]["error"]
    assert error["code"] == "upstream_stream_broken"
    assert "could not reach" not in error["message"].lower()


async def test_usage_is_estimated_when_the_upstream_sends_none(
    client: httpx.AsyncClient, upstream: StubUpstream
) -> None:
    completion_before = tokens("completion")
    estimated_before = tokens("completion", "chatservice_tokens_estimated_total")
    upstream.plan[:] = ["no_usage"]
    response = await client.post(
        CHAT, headers=AUTH, json={**STREAM, "stream_options": {"include_usage": True}}
    )
    events = sse_events(response.text)
    assert events[-1] == "[DONE]"
    usage_chunk = events[-2]
    assert usage_chunk["choices"] == []
    # The stub streams its five words as five content chunks.
    assert usage_chunk["usage"]["completion_tokens"] == 5
    assert usage_chunk["usage"]["estimated"] is True
    assert usage_chunk["id"] == events[0]["id"]
    assert tokens("completion") == completion_before + 5
    assert tokens("completion", "chatservice_tokens_estimated_total") == estimated_before + 5

    upstream.plan[:] = ["no_usage"]
    unasked = sse_events((await client.post(CHAT, headers=AUTH, json=STREAM)).text)
    assert all("usage" not in e for e in unasked[:-1])
    assert tokens("completion") == completion_before + 10

    upstream.plan[:] = ["no_usage"]
    answer = (await client.post(CHAT, headers=AUTH, json=ASK)).json()
    assert answer["usage"]["estimated"] is True
    assert answer["usage"]["completion_tokens"] > 0


async def test_the_token_limit_is_sent_under_the_routes_name(
    open_client: Callable[..., Any], upstream: StubUpstream
) -> None:
    routes = [
        ModelRoute(name="upstream", backend="openai", base_url=upstream.base_url),
        ModelRoute(name="modern", backend="openai", base_url=upstream.base_url,
                   max_tokens_field="max_completion_tokens"),
    ]  # fmt: skip
    async with open_client(models=routes) as http:
        await http.post(CHAT, headers=AUTH, json={**ASK, "max_completion_tokens": 8})
        await http.post(CHAT, headers=AUTH, json={**ASK, "model": "modern", "max_tokens": 9})
    default, modern = upstream.requests
    assert default["max_tokens"] == 8
    assert "max_completion_tokens" not in default
    assert modern["max_completion_tokens"] == 9
    assert "max_tokens" not in modern


async def test_requests_refused_before_the_backend_are_counted(
    client: httpx.AsyncClient,
) -> None:
    before = {o: completions("-", "-", o) for o in ("unauthenticated", "invalid_request")}
    unknown_before = completions("-", "false", "not_found")
    assert (await client.post(CHAT, json=ASK)).status_code == 401
    bad = await client.post(CHAT, headers=AUTH, json={**ASK, "temperature": 9})
    assert bad.status_code == 400
    unknown = await client.post(CHAT, headers=AUTH, json={**ASK, "model": "nope"})
    assert unknown.status_code == 404
    assert completions("-", "-", "unauthenticated") == before["unauthenticated"] + 1
    assert completions("-", "-", "invalid_request") == before["invalid_request"] + 1
    assert completions("-", "false", "not_found") == unknown_before + 1


@pytest.fixture
async def patient_service(pg_url: str, upstream: StubUpstream) -> AsyncIterator[str]:
    """The app on a real loopback socket, with a first-byte timeout far beyond the test's."""
    settings = make_settings(pg_url, upstream, upstream_first_byte_timeout=20.0,
                             upstream_total_timeout=30.0)  # fmt: skip
    async with serve_on_loopback(create_app(settings)) as url:
        yield url


async def test_leaving_before_the_first_byte_cancels_the_upstream_stream(
    patient_service: str, upstream: StubUpstream
) -> None:
    before = completions("upstream", "true", "cancelled")
    upstream.plan[:] = ["slow_headers"]
    async with aiohttp.ClientSession() as session:
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0.5):
                await session.post(patient_service + CHAT, headers=AUTH, json=STREAM)
    assert await asyncio.to_thread(upstream.disconnected.wait, 5)
    deadline = time.monotonic() + 5
    while completions("upstream", "true", "cancelled") == before:
        assert time.monotonic() < deadline, "the cancelled stream was not counted"
        await asyncio.sleep(0.05)


async def test_health_reports_a_refused_key_and_an_unlisted_model_per_backend(
    open_client: Callable[..., Any], upstream: StubUpstream
) -> None:
    routes = [
        ModelRoute(name="listed", backend="openai", base_url=upstream.base_url,
                   upstream_model="stub-model-v1", api_key="k1"),
        ModelRoute(name="unlisted", backend="openai", base_url=upstream.base_url,
                   upstream_model="missing-model", api_key="k1"),
        ModelRoute(name="echo", backend="echo"),
    ]  # fmt: skip
    async with open_client(models=routes) as http:
        report = await http.get(REPORT)
        assert report.status_code == 200  # a backend's trouble is not this pod's
        body = report.json()
        assert body["status"] == "degraded"
        assert body["backends"]["listed"]["status"] == "ok"
        assert body["backends"]["unlisted"]["status"] == "degraded"
        assert "missing-model" in body["backends"]["unlisted"]["error"]
        assert body["backends"]["echo"]["status"] == "ok"

    upstream.reset()
    upstream.models_status = 401
    async with open_client(models=routes) as http:
        body = (await http.get(REPORT)).json()
    assert body["backends"]["listed"]["status"] == "degraded"
    assert "refused" in body["backends"]["listed"]["error"]
    assert "org-stub0rg" not in str(body)


async def test_health_checks_each_upstream_once_and_caches_it(
    open_client: Callable[..., Any], upstream: StubUpstream
) -> None:
    routes = [
        ModelRoute(name=f"m{i}", backend="openai", base_url=upstream.base_url,
                   upstream_model="stub-model-v1", api_key="k1")
        for i in range(10)
    ]  # fmt: skip
    async with open_client(models=routes, health_backend_cache_ttl=30) as http:
        reports = await asyncio.gather(*(http.get(REPORT) for _ in range(5)))
    assert {r.json()["status"] for r in reports} == {"ok"}
    assert upstream.models_calls == 1
