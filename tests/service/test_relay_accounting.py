"""The relayed endpoints (embeddings, legacy completions) are accounted as chat is: one ledger
row each with its API, tokens and cost; rate limits shared with chat, refused with OpenAI's 429
and headers as the official SDK sees them; settlement of what admission reserved; budgets
refused before any upstream call. A real uvicorn on loopback, its own PostgreSQL database, the
pod's rate-limit file and the stub upstream."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from chatservice.config import ModelRoute
from chatservice.main import create_app
from tests.service.accounting_db import new_key, wait_for_rows
from tests.service.harness import AUTH, make_settings, serve_on_loopback
from tests.service.stub_upstream import REPLY, StubUpstream

# USD per million tokens.
INPUT_PRICE, OUTPUT_PRICE = 3.0, 15.0


@pytest.fixture
async def service(database: str, upstream: StubUpstream, tmp_path: Path) -> AsyncIterator[str]:
    routes = [
        ModelRoute(
            name="upstream",
            backend="openai",
            base_url=upstream.base_url,
            upstream_model="stub-model-v1",
            input_price_per_million_tokens=INPUT_PRICE,
            output_price_per_million_tokens=OUTPUT_PRICE,
        ),
        # Nothing listens on port 1: every call fails before an answer.
        ModelRoute(name="down", backend="openai", base_url="http://127.0.0.1:1/v1"),
    ]
    settings = make_settings(
        database,
        models=routes,
        upstream_max_retries=0,
        ledger_flush_interval=0.1,
        rate_limit_file=tmp_path / "rate-limits.sqlite",
    )
    async with serve_on_loopback(create_app(settings)) as url:
        yield url


def _sdk(url: str, key: str) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=url + "/api/v1", api_key=key, max_retries=0)


async def _set_limits(url: str, key_id: uuid.UUID, **limits: object) -> None:
    async with httpx.AsyncClient(timeout=10) as http:
        response = await http.put(f"{url}/api/v1/limits/key/{key_id}", json=limits, headers=AUTH)
    assert response.status_code == 200, response.text


MESSAGES: Any = [{"role": "user", "content": "hi"}]


def _cost(prompt: int, completion: int) -> float:
    return (prompt * INPUT_PRICE + completion * OUTPUT_PRICE) / 1e6


async def test_each_relayed_request_leaves_one_row_with_its_api_tokens_and_cost(
    service: str, database: str, upstream: StubUpstream
) -> None:
    key, key_id = await new_key(database)
    sdk = _sdk(service, key)

    embeddings = await sdk.embeddings.create(model="upstream", input=["a", "b", "c"])
    assert embeddings.usage.prompt_tokens == 3
    completion = await sdk.completions.create(model="upstream", prompt="Once", max_tokens=8)
    assert completion.choices[0].text == REPLY
    stream = await sdk.completions.create(
        model="upstream", prompt="Once", stream=True, stream_options={"include_usage": True}
    )
    streamed = [chunk async for chunk in stream]
    assert streamed[-1].usage is not None
    assert streamed[-1].usage.completion_tokens == 5
    stream = await sdk.completions.create(model="upstream", prompt="Once", stream=True)
    assert all(chunk.usage is None for chunk in [chunk async for chunk in stream])

    upstream.relay_usage = False  # as servers without usage: the tokens are counted
    await sdk.embeddings.create(model="upstream", input="hello world!")  # 12 chars: 3 tokens
    await sdk.completions.create(model="upstream", prompt="Once upon a")  # 11 chars: 3 tokens
    stream = await sdk.completions.create(model="upstream", prompt="Once upon a", stream=True)
    assert "".join([chunk.choices[0].text async for chunk in stream]) == REPLY

    with pytest.raises(openai.APIError):
        await sdk.embeddings.create(model="down", input="a")

    rows = await wait_for_rows(database, 8, key_id=key_id)
    assert len(rows) == 8
    embedded, whole, streamed_usage, streamed_quiet, *counted, failed = rows
    assert [row.api for row in rows] == [
        "embeddings", "completions", "completions", "completions",
        "embeddings", "completions", "completions", "embeddings",
    ]  # fmt: skip
    assert (embedded.prompt_tokens, embedded.completion_tokens) == (3, 0)
    assert embedded.cost_usd == pytest.approx(_cost(3, 0))
    assert (embedded.stream, embedded.status, embedded.outcome) == (False, 200, "success")
    assert embedded.upstream == "stub-model-v1"
    for row in (whole, streamed_usage, streamed_quiet):
        assert (row.prompt_tokens, row.completion_tokens, row.total_tokens) == (1, 5, 6)
        assert row.cost_usd == pytest.approx(_cost(1, 5))
        assert (row.status, row.outcome, row.tokens_estimated) == (200, "success", False)
    assert not whole.stream
    assert whole.time_to_first_token_ms is None
    assert streamed_usage.stream
    assert streamed_usage.time_to_first_token_ms is not None
    estimated = [(r.prompt_tokens, r.completion_tokens, r.tokens_estimated) for r in counted]
    # JSON: a quarter of the text's 28 characters; streamed: one token per content chunk.
    assert estimated == [(3, 0, True), (3, 7, True), (3, 5, True)]
    assert failed.status >= 500
    assert failed.outcome not in ("success", "cancelled")
    assert (failed.model, failed.total_tokens, failed.cost_usd) == ("down", 0, 0.0)

    async with httpx.AsyncClient(timeout=10) as http:
        report = await http.get(
            f"{service}/api/v1/usage",
            params={"group_by": "api", "key_id": str(key_id)},
            headers=AUTH,
        )
    assert report.status_code == 200, report.text
    by_api = {group["group"]: group for group in report.json()["data"]}
    assert {api: group["requests"] for api, group in by_api.items()} == {
        "embeddings": 3, "completions": 5,
    }  # fmt: skip
    assert by_api["embeddings"]["total_tokens"] == 6


async def test_a_request_limit_counts_chat_embeddings_and_completions_together(
    service: str, database: str, upstream: StubUpstream
) -> None:
    key, key_id = await new_key(database)
    await _set_limits(service, key_id, requests_per_minute=4)
    sdk = _sdk(service, key)
    calls = (
        sdk.chat.completions.with_raw_response.create(model="upstream", messages=MESSAGES),
        sdk.embeddings.with_raw_response.create(model="upstream", input="a"),
        sdk.completions.with_raw_response.create(model="upstream", prompt="a"),
        sdk.completions.with_raw_response.create(model="upstream", prompt="a", stream=True),
    )
    remaining = []
    for call in calls:
        response = await call
        assert response.headers["x-ratelimit-limit-requests"] == "4"
        remaining.append(response.headers["x-ratelimit-remaining-requests"])
        parsed = response.parse()
        if isinstance(parsed, openai.AsyncStream):
            _ = [chunk async for chunk in parsed]
    assert remaining == ["3", "2", "1", "0"]
    answered = len(upstream.requests)

    for refused_call in (
        sdk.embeddings.create(model="upstream", input="a"),
        sdk.completions.create(model="upstream", prompt="a"),
        sdk.completions.create(model="upstream", prompt="a", stream=True),
        sdk.chat.completions.create(model="upstream", messages=MESSAGES),
    ):
        with pytest.raises(openai.RateLimitError) as refused:
            await refused_call
        assert refused.value.code == "rate_limit_exceeded"
        headers = refused.value.response.headers
        assert headers["x-ratelimit-limit-requests"] == "4"
        assert headers["x-ratelimit-remaining-requests"] == "0"
        assert 1 <= int(headers["retry-after"]) <= 60
    assert len(upstream.requests) == answered, "a refused request reached the upstream"
    rows = await wait_for_rows(database, 8, key_id=key_id)
    assert [(row.api, row.status, row.outcome) for row in rows] == [
        ("chat/completions", 200, "success"), ("embeddings", 200, "success"),
        ("completions", 200, "success"), ("completions", 200, "success"),
        # The refused ones have rows too: no tokens, no cost, no upstream.
        ("embeddings", 429, "rate_limited"), ("completions", 429, "rate_limited"),
        ("completions", 429, "rate_limited"), ("chat/completions", 429, "rate_limited"),
    ]  # fmt: skip
    for refused_row in rows[4:]:
        assert (refused_row.total_tokens, refused_row.cost_usd, refused_row.upstream) == (
            0,
            0,
            None,
        )


async def test_a_completion_settles_its_reserved_tokens(service: str, database: str) -> None:
    key, key_id = await new_key(database)
    # A token comes back every 2 s: within the test's few seconds at most one.
    await _set_limits(service, key_id, tokens_per_minute=30)
    sdk = _sdk(service, key)

    def remaining(response: Any) -> int:
        return int(response.headers["x-ratelimit-remaining-tokens"])

    # Reserves 1 ("hi") + 9 (max_tokens) = 10; the stub's usage says 6 were used.
    first = await sdk.completions.with_raw_response.create(
        model="upstream", prompt="hi", max_tokens=9
    )
    assert remaining(first) == 20
    await asyncio.sleep(0.2)  # the settlement goes by a background task
    second = await sdk.completions.with_raw_response.create(
        model="upstream", prompt="hi", max_tokens=9
    )
    assert 14 <= remaining(second) <= 15  # 30 - 6 - 10; without the settlement 10
    # Embeddings reserve their input's estimate (1 token) and use what the upstream counted.
    await asyncio.sleep(0.2)
    third = await sdk.embeddings.with_raw_response.create(model="upstream", input="hi")
    assert 17 <= remaining(third) <= 18  # 30 - 6 - 6 - 1


async def test_an_over_budget_key_gets_insufficient_quota_on_embeddings_before_the_upstream(
    service: str, database: str, upstream: StubUpstream
) -> None:
    key, key_id = await new_key(database)
    await _set_limits(service, key_id, max_budget_usd=0, budget_period="daily")
    sdk = _sdk(service, key)
    with pytest.raises(openai.RateLimitError) as refused:
        await sdk.embeddings.create(model="upstream", input="a")
    assert refused.value.code == "insufficient_quota"
    body = refused.value.body
    assert isinstance(body, dict)
    assert body["type"] == "insufficient_quota"
    with pytest.raises(openai.RateLimitError):
        await sdk.completions.create(model="upstream", prompt="a", stream=True)
    assert upstream.requests == [], "the refused requests reached the upstream"
    rows = await wait_for_rows(database, 2, key_id=key_id)
    assert [(r.api, r.stream, r.status, r.outcome, r.cost_usd) for r in rows] == [
        ("embeddings", False, 429, "over_budget", 0),
        ("completions", True, 429, "over_budget", 0),
    ]


async def test_a_client_leaving_a_completion_stream_leaves_a_cancelled_row(
    service: str, database: str, upstream: StubUpstream
) -> None:
    key, key_id = await new_key(database)
    upstream.relay_word_delay = 0.5  # five words: 2.5 s
    read = 0
    async with httpx.AsyncClient(timeout=10) as http:
        async with http.stream(
            "POST",
            service + "/api/v1/completions",
            headers={"Authorization": f"Bearer {key}"},
            json={"model": "upstream", "prompt": "Once", "stream": True},
        ) as response:
            async for line in response.aiter_lines():
                if line.startswith("data: "):
                    read += 1
                    if read == 2:
                        break
    (row,) = await wait_for_rows(database, 1, key_id=key_id)
    assert (row.api, row.stream, row.status, row.outcome) == ("completions", True, 200, "cancelled")
    assert 2 <= row.completion_tokens < 5  # the words relayed before the hang-up
    assert row.cost_usd > 0
