"""Rate limits are exact across replicas: two gunicorn servers (two workers each) share Redis
and PostgreSQL, and of 3L concurrent requests against a limit of L exactly L pass, for
requests per minute, tokens per minute and concurrent requests. Without Redis they are exact
across the workers of one server (the pod's file). Refusals are OpenAI's 429 with its headers,
as the official SDK sees them."""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest

from tests.service.accounting_db import NO_LIMITS, new_key
from tests.service.gunicorn_server import Gunicorn, gunicorn_starter
from tests.service.stub_upstream import StubUpstream, echo_and_stub_routes

L = 5
WORDS = " ".join(f"w{i}" for i in range(10))  # ten echo words: 2 s at 0.2 s each


@pytest.fixture(scope="module")
def replicas(
    pg_url: str, redis_url: str, stub: StubUpstream, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Gunicorn, Gunicorn]]:
    with gunicorn_starter(pg_url, tmp_path_factory.mktemp("replicas")) as start:
        env = {
            "CHATSERVICE_REDIS_URL": redis_url,
            "CHATSERVICE_MODELS": echo_and_stub_routes(stub),
            "CHATSERVICE_ECHO_TOKEN_DELAY": "0.2",
        }
        yield start(**env), start(**env)


async def _set_limits(server: Gunicorn, key_id: uuid.UUID, **limits: int) -> None:
    async with httpx.AsyncClient(timeout=10) as http:
        response = await http.put(
            f"{server.api}/limits/key/{key_id}",
            json=limits,
            headers={"Authorization": f"Bearer {server.key}"},
        )
    assert response.status_code == 200, response.text
    assert response.json() == {**NO_LIMITS, **limits}


async def _all_at_once(
    servers: tuple[Gunicorn, ...], key: str, count: int, body: dict[str, Any]
) -> list[httpx.Response]:
    """`count` requests sent together, spread over the servers."""
    async with httpx.AsyncClient(timeout=30, limits=httpx.Limits(max_connections=100)) as http:
        return await asyncio.gather(
            *(
                http.post(
                    servers[i % len(servers)].api + "/chat/completions",
                    json=body,
                    headers={"Authorization": f"Bearer {key}"},
                )
                for i in range(count)
            )
        )


def _assert_refusals(responses: list[httpx.Response], passed: int) -> None:
    statuses = Counter(response.status_code for response in responses)
    assert statuses == {200: passed, 429: len(responses) - passed}, statuses
    for response in responses:
        if response.status_code == 429:
            error = response.json()["error"]
            assert error["code"] == "rate_limit_exceeded"
            assert error["type"] == "rate_limit_error"
            assert int(response.headers["retry-after"]) >= 1


ECHO = {"model": "echo", "messages": [{"role": "user", "content": "hi"}]}


async def test_requests_per_minute_are_exact_across_two_replicas(
    replicas: tuple[Gunicorn, Gunicorn], pg_url: str
) -> None:
    key, key_id = await new_key(pg_url)
    await _set_limits(replicas[0], key_id, requests_per_minute=L)
    responses = await _all_at_once(replicas, key, 3 * L, ECHO)
    _assert_refusals(responses, L)
    passed = [r for r in responses if r.status_code == 200]
    assert {r.headers["x-ratelimit-limit-requests"] for r in passed} == {str(L)}
    # Each admission took one: the counts left are every value from L - 1 down to 0.
    assert sorted(int(r.headers["x-ratelimit-remaining-requests"]) for r in passed) == list(
        range(L)
    )
    assert all(r.headers["x-ratelimit-reset-requests"].endswith("s") for r in passed)


async def test_tokens_per_minute_are_exact_across_two_replicas(
    replicas: tuple[Gunicorn, Gunicorn], pg_url: str
) -> None:
    key, key_id = await new_key(pg_url)
    # Each request reserves 10 tokens ("hi" is 1, max_tokens 9) and uses 10 (the stub's usage).
    await _set_limits(replicas[1], key_id, tokens_per_minute=10 * L)
    body = {"model": "upstream", "max_tokens": 9, "messages": [{"role": "user", "content": "hi"}]}
    responses = await _all_at_once(replicas, key, 3 * L, body)
    _assert_refusals(responses, L)
    passed = [r for r in responses if r.status_code == 200]
    assert {r.headers["x-ratelimit-limit-tokens"] for r in passed} == {str(10 * L)}
    remaining = sorted(int(r.headers["x-ratelimit-remaining-tokens"]) for r in passed)
    assert remaining == [10 * i for i in range(L)]


async def test_concurrent_requests_are_exact_across_two_replicas(
    replicas: tuple[Gunicorn, Gunicorn], pg_url: str
) -> None:
    key, key_id = await new_key(pg_url)
    await _set_limits(replicas[0], key_id, max_concurrent=L)
    body = {**ECHO, "stream": True, "messages": [{"role": "user", "content": WORDS}]}
    responses = await _all_at_once(replicas, key, 3 * L, body)
    _assert_refusals(responses, L)
    for response in responses:
        if response.status_code == 200:
            assert response.text.endswith("data: [DONE]\n\n")
    # The leases ended with their streams: the key can start as many again.
    await asyncio.sleep(0.5)
    again = await _all_at_once(replicas, key, L, body)
    assert [r.status_code for r in again] == [200] * L


async def test_the_openai_sdk_sees_a_rate_limit_error_with_the_headers(
    replicas: tuple[Gunicorn, Gunicorn], pg_url: str
) -> None:
    key, key_id = await new_key(pg_url)
    await _set_limits(replicas[0], key_id, requests_per_minute=1, tokens_per_minute=1000)
    sdk = openai.AsyncOpenAI(base_url=replicas[1].api, api_key=key, max_retries=0)
    first = await sdk.chat.completions.with_raw_response.create(
        model="echo", messages=[{"role": "user", "content": "hi"}]
    )
    assert first.headers["x-ratelimit-remaining-requests"] == "0"
    assert first.headers["x-ratelimit-limit-tokens"] == "1000"
    with pytest.raises(openai.RateLimitError) as refused:
        await sdk.chat.completions.create(
            model="echo", messages=[{"role": "user", "content": "hi"}]
        )
    assert refused.value.code == "rate_limit_exceeded"
    headers = refused.value.response.headers
    assert headers["x-ratelimit-limit-requests"] == "1"
    assert headers["x-ratelimit-remaining-requests"] == "0"
    assert 50 <= int(headers["retry-after"]) <= 60  # one request a minute: the next in ~60 s


async def test_without_redis_the_limits_are_exact_across_one_servers_workers(
    pg_url: str, tmp_path_factory: pytest.TempPathFactory
) -> None:
    key, key_id = await new_key(pg_url)
    with gunicorn_starter(pg_url, tmp_path_factory.mktemp("one-pod")) as start:
        server = start()
        await _set_limits(server, key_id, requests_per_minute=L)
        responses = await _all_at_once((server,), key, 3 * L, ECHO)
    _assert_refusals(responses, L)
