"""What a completion cost, from its route's prices (USD per million tokens)."""

from __future__ import annotations

from chatservice.config import ModelRoute

PER_MILLION = 1_000_000


def cost_usd(route: ModelRoute, prompt_tokens: int, completion_tokens: int) -> float:
    return (
        prompt_tokens * route.input_price_per_million_tokens
        + completion_tokens * route.output_price_per_million_tokens
    ) / PER_MILLION
