"""A relayed stream chunk under the route's public model name: the upstream's bytes go out as
they came except for the name (its spacing, key order and number spellings are kept), and a
chunk where the name cannot be swapped unambiguously is encoded again, still correct."""

from __future__ import annotations

import json
from typing import Any

import orjson
import pytest

from chatservice.config import ModelRoute
from chatservice.inference.base import CallStats
from chatservice.inference.openai_compatible import _event

ROUTE = ModelRoute(name="public-é", backend="openai", base_url="http://127.0.0.1:1/v1")


def chunk(model: Any = "llama-3.1-8b", **extra: Any) -> dict[str, Any]:
    return {
        "id": "chatcmpl-1",
        "object": "chat.completion.chunk",
        "created": 1700000000,
        "model": model,
        "choices": [{"index": 0, "delta": {"content": 'hi "model":'}, "finish_reason": None}],
        **extra,
    }


@pytest.mark.parametrize(
    "data",
    [
        orjson.dumps(chunk()),  # compact, as vLLM and OpenAI send it
        json.dumps(chunk()).encode(),  # ", " and ": " separators, as Python servers send it
        json.dumps(chunk(model="mödel/ünïcode"), ensure_ascii=False).encode(),
    ],
)
def test_only_the_name_changes_in_the_bytes(data: bytes) -> None:
    stats = CallStats()
    parsed, relayed = _event(ROUTE, data, stats)
    upstream = json.loads(data)
    assert json.loads(relayed) == {**upstream, "model": "public-é"}
    assert parsed["model"] == "public-é"
    assert stats.upstream_model == upstream["model"]
    # Everything but the model field is the upstream's bytes.
    before, _, after = data.partition(orjson.dumps(upstream["model"]))
    assert relayed.startswith(before.removesuffix(b" ")) or relayed.startswith(before)
    assert relayed.endswith(after)


@pytest.mark.parametrize(
    "upstream",
    [
        # "model" twice, the nested one first and with the same name: it must stay.
        {"provider": {"model": "llama-3.1-8b"}, **chunk()},
        chunk(model="mödel"),  # sent as "m\u00f6del": spelled as orjson would not
        chunk(model=None),
    ],
)
def test_an_ambiguous_chunk_is_encoded_again_correctly(upstream: dict[str, Any]) -> None:
    data = json.dumps(upstream, ensure_ascii=True).encode()
    _, relayed = _event(ROUTE, data, CallStats())
    assert json.loads(relayed) == {**upstream, "model": "public-é"}


def test_a_chunk_already_under_the_public_name_is_not_touched() -> None:
    data = json.dumps(chunk(model="public-é")).encode()
    assert _event(ROUTE, data, CallStats())[1] is data
