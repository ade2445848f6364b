"""OpenAI's rate-limit response headers, and its way of writing durations ("6m0s", "1.5s")."""

from __future__ import annotations

from chatservice.accounting.limits import Limit, LimitState

_HEADER_KINDS = {"requests": "requests", "tokens": "tokens"}


def rate_limit_headers(limits: tuple[Limit, ...], states: tuple[LimitState, ...]) -> dict[str, str]:
    """For requests and tokens, the headers of the limit with the least left (OpenAI sends
    one set per kind; a key may have limits of its own, its user's and its team's)."""
    tightest: dict[str, tuple[Limit, LimitState]] = {}
    for limit, state in zip(limits, states, strict=False):
        kind = _HEADER_KINDS.get(limit.kind)
        if kind is None:
            continue
        if kind not in tightest or state.remaining < tightest[kind][1].remaining:
            tightest[kind] = (limit, state)
    headers: dict[str, str] = {}
    for kind, (limit, state) in tightest.items():
        headers[f"x-ratelimit-limit-{kind}"] = str(limit.limit)
        headers[f"x-ratelimit-remaining-{kind}"] = str(max(state.remaining, 0))
        headers[f"x-ratelimit-reset-{kind}"] = duration(state.reset_ms)
    return headers


def duration(ms: int) -> str:
    """Go's duration notation, as OpenAI writes `x-ratelimit-reset-*`: 250ms, 1.5s, 6m0s."""
    if ms < 1000:
        return f"{max(ms, 0)}ms"
    minutes, rest = divmod(ms, 60_000)
    seconds = f"{rest / 1000:.3f}".rstrip("0").rstrip(".")
    return f"{minutes}m{seconds}s" if minutes else f"{seconds}s"
