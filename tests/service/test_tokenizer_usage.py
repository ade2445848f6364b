"""Token usage from a route's tokenizer when the upstream sends none (a loopback stub upstream
and a real tokenizer.json written by the `tokenizers` library)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from chatservice.chat.usage import TokenizerLoadError
from chatservice.config import ModelRoute
from chatservice.main import create_app
from tests.service.harness import AUTH, CHAT, make_settings, serve, sse_events
from tests.service.stub_upstream import StubUpstream
from tests.service.test_upstream_errors import tokens
from tests.service.tiny_tokenizer import write_tiny_tokenizer

# "the sun is hot ." is 5 tokens (15 characters: the estimate would say 4).
ASK = {"model": "upstream", "messages": [{"role": "user", "content": "the sun is hot."}]}
STREAM = {**ASK, "stream": True}
# The stub's reply, "Hello from the stub upstream": hello from the stu ##b up ##s ##t ##r ##e ##a
# ##m (five chunks, 28 characters: the estimate would say 5, or 7 for a JSON answer).
PROMPT_TOKENS, REPLY_TOKENS = 5, 12


@pytest.fixture
def tokenizer_file(tmp_path: Path) -> Path:
    return write_tiny_tokenizer(tmp_path / "tokenizer.json")


@pytest.fixture
def tokenized(open_client: Callable[..., Any], upstream: StubUpstream, tokenizer_file: Path) -> Any:
    route = ModelRoute(name="upstream", backend="openai", base_url=upstream.base_url,
                       tokenizer=tokenizer_file)  # fmt: skip
    return open_client(models=[route])


def counted(usage: dict[str, Any]) -> tuple[int, int, int]:
    assert usage["estimated"] is True
    assert usage["usage_source"] == "tokenizer"
    return usage["prompt_tokens"], usage["completion_tokens"], usage["total_tokens"]


async def test_a_stream_without_usage_is_counted_with_the_tokenizer(
    tokenized: Any, upstream: StubUpstream
) -> None:
    completion_before = tokens("completion")
    estimated_before = tokens("completion", "chatservice_tokens_estimated_total")
    prompt_before = tokens("prompt")
    async with tokenized as http:
        upstream.plan[:] = ["no_usage"]
        response = await http.post(
            CHAT, headers=AUTH, json={**STREAM, "stream_options": {"include_usage": True}}
        )
        events = sse_events(response.text)
        assert events[-1] == "[DONE]"
        assert events[-2]["choices"] == []
        assert counted(events[-2]["usage"]) == (PROMPT_TOKENS, REPLY_TOKENS, 17)

        upstream.plan[:] = ["no_usage"]
        unasked = sse_events((await http.post(CHAT, headers=AUTH, json=STREAM)).text)
    assert all("usage" not in e for e in unasked[:-1])
    # Both streams counted, the one that did not ask for usage too.
    assert tokens("completion") == completion_before + 2 * REPLY_TOKENS
    assert tokens("prompt") == prompt_before + 2 * PROMPT_TOKENS
    estimated = tokens("completion", "chatservice_tokens_estimated_total")
    assert estimated == estimated_before + 2 * REPLY_TOKENS


async def test_a_json_answer_without_usage_is_counted_with_the_tokenizer(
    tokenized: Any, upstream: StubUpstream
) -> None:
    upstream.plan[:] = ["no_usage"]
    async with tokenized as http:
        answer = (await http.post(CHAT, headers=AUTH, json=ASK)).json()
    assert counted(answer["usage"]) == (PROMPT_TOKENS, REPLY_TOKENS, 17)


async def test_the_upstreams_own_usage_wins_over_the_tokenizer(
    tokenized: Any, upstream: StubUpstream
) -> None:
    estimated_before = tokens("completion", "chatservice_tokens_estimated_total")
    async with tokenized as http:
        answer = (await http.post(CHAT, headers=AUTH, json=ASK)).json()
        response = await http.post(
            CHAT, headers=AUTH, json={**STREAM, "stream_options": {"include_usage": True}}
        )
    stub_usage = {"prompt_tokens": 5, "completion_tokens": 5, "total_tokens": 10}
    assert answer["usage"] == stub_usage
    assert sse_events(response.text)[-2]["usage"] == stub_usage
    assert tokens("completion", "chatservice_tokens_estimated_total") == estimated_before


async def test_without_a_tokenizer_the_usage_says_it_is_an_estimate(
    open_client: Callable[..., Any], upstream: StubUpstream
) -> None:
    upstream.plan[:] = ["no_usage"]
    async with open_client() as http:
        answer = (await http.post(CHAT, headers=AUTH, json=ASK)).json()
    assert answer["usage"]["usage_source"] == "estimate"
    assert answer["usage"]["prompt_tokens"] == 4  # a quarter of the 15 characters, rounded up


async def test_a_worker_does_not_start_with_a_file_that_is_not_a_tokenizer(
    pg_url: str, upstream: StubUpstream, tmp_path: Path
) -> None:
    broken = tmp_path / "tokenizer.json"
    broken.write_text('{"version": "1.0", "model": {"type": "Nonsense"}}')
    route = ModelRoute(name="upstream", backend="openai", base_url=upstream.base_url,
                       tokenizer=broken)  # fmt: skip
    with pytest.raises(TokenizerLoadError, match=r"'upstream': tokenizer .*tokenizer\.json"):
        async with serve(create_app(make_settings(pg_url, upstream, models=[route]))):
            pass


@pytest.mark.parametrize("content", [None, "not json"])
def test_chatservice_run_refuses_a_bad_tokenizer_in_one_line(
    tmp_path: Path, content: str | None
) -> None:
    path = tmp_path / "tokenizer.json"
    if content is not None:
        path.write_text(content)
    models = f'[{{"name": "llama", "backend": "echo", "tokenizer": "{path}"}}]'
    env = {**os.environ, "CHATSERVICE_MODELS": models, "CHATSERVICE_PORT": "18701"}
    result = subprocess.run(
        [sys.executable, "-m", "chatservice.cli", "run"], env=env, capture_output=True, text=True,
        check=False, timeout=60,
    )  # fmt: skip
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("chatservice: invalid configuration: models: model 'llama': ")
    assert str(path) in lines[0]
    assert ("not found" if content is None else "not a usable") in lines[0]
