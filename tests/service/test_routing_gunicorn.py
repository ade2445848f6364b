"""Routing in the real process model: gunicorn with two workers, each with its own view of the
endpoints (passive health is per worker), the official SDK on the `/v1` base path."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator

import openai
import pytest
from openai.types.chat import ChatCompletionMessageParam

from tests.service.gunicorn_server import Gunicorn
from tests.service.stub_upstream import StubUpstream

pytestmark = pytest.mark.timeout(180)


@pytest.fixture
def second_stub() -> Iterator[StubUpstream]:
    with StubUpstream() as server:
        yield server


def test_two_workers_route_around_a_failing_endpoint_and_fall_back(
    start_gunicorn: Callable[..., Gunicorn], upstream: StubUpstream, second_stub: StubUpstream
) -> None:
    upstream.default = "status:503"
    models = [
        {"name": "pool", "backend": "openai", "upstream_model": "stub-model-v1",
         "endpoints": [{"base_url": upstream.base_url}, {"base_url": second_stub.base_url}]},
        {"name": "big", "backend": "openai", "base_url": upstream.base_url,
         "fallbacks": ["pool"]},
    ]  # fmt: skip
    server = start_gunicorn(
        CHATSERVICE_MODELS=json.dumps(models), CHATSERVICE_UPSTREAM_RETRY_BACKOFF="0.01"
    )
    sdk = openai.OpenAI(base_url=server.url + "/v1", api_key=server.key, max_retries=0)
    messages: list[ChatCompletionMessageParam] = [{"role": "user", "content": "hi"}]
    for _ in range(40):
        completion = sdk.chat.completions.create(model="pool", messages=messages)
        assert completion.model == "pool"
    # Each worker ejects the failing endpoint after its own 3 failures, at most.
    assert len(upstream.requests) <= 2 * 3
    assert len(second_stub.requests) == 40

    raw = sdk.chat.completions.with_raw_response.create(model="big", messages=messages)
    assert raw.headers["x-chatservice-upstream"] == "pool/1"
    assert raw.parse().model == "pool"
    embedding = sdk.embeddings.create(model="pool", input="hello")
    assert embedding.model == "pool"
