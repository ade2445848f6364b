"""Rate limits in Redis: one script call per check (admit.lua), exact across every worker and
replica that shares the server; settlements are another script, sent and not waited for.
Both go through resp.py's pipelined client, not redis-py's (why: there)."""

from __future__ import annotations

import asyncio
import functools
from importlib.resources import files
from typing import Any

from chatservice.accounting.limits import KIND_CODES, Limit, LimitState, Verdict
from chatservice.accounting.resp import Encoded, RespClient, Script


def _script(name: str) -> str:
    return files("chatservice.accounting").joinpath(name).read_text()


class RedisLimitStore:
    def __init__(self, url: str, timeout: float) -> None:
        # No retries: a check is on the request path, and the failure mode decides instead.
        # The caller bounds each wait by `timeout`; a connection silent for longer is replaced.
        self._client = RespClient(url, stale_after=timeout)
        self._admit = Script(self._client, _script("admit.lua"))
        self._settle = Script(self._client, _script("settle.lua"))

    async def admit(
        self, limits: tuple[Limit, ...], tokens: int, lease: str, lease_ms: int
    ) -> Verdict:
        keys, limit_args = _encoded(limits)
        answer: Any = await self._admit(keys=[keys], args=[tokens, lease, lease_ms, limit_args])
        # Integer replies, parsed as ints: {allowed, denied, retry ms, then per limit a pair}.
        allowed, denied, retry_ms = answer[:3]
        states = tuple(map(LimitState, answer[3::2], answer[4::2]))
        if allowed:
            return Verdict(True, states)
        return Verdict(False, states, limits[denied - 1], retry_ms)

    def settle(
        self, limits: tuple[Limit, ...], token_delta: int, lease: str
    ) -> asyncio.Future[Any]:
        keys, limit_args = _encoded(limits)
        return self._settle.send(keys=[keys], args=[token_delta, lease, limit_args])

    async def close(self) -> None:
        await self._client.close()


@functools.lru_cache(maxsize=4096)
def _encoded(limits: tuple[Limit, ...]) -> tuple[Encoded, Encoded]:
    """The scripts' keys, and their per-limit arguments (kind, limit), encoded once: the same
    limits come with every request of a key (limit_settings.py caches them)."""
    args: list[str | int] = []
    for limit in limits:
        args += (KIND_CODES[limit.kind], limit.limit)
    return Encoded.of(*(limit.store_key for limit in limits)), Encoded.of(*args)
