"""Rate limits in Redis: one script call per check (admit.lua), exact across every worker and
replica that shares the server; settlements are another script, sent off the request path.
Both go through resp.py's pipelined client, not redis-py's (why: there)."""

from __future__ import annotations

from importlib.resources import files
from typing import Any

from chatservice.accounting.limits import KIND_CODES, Limit, LimitState, Verdict
from chatservice.accounting.resp import RespClient, Script


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
        answer: Any = await self._admit(
            keys=[limit.store_key for limit in limits],
            args=[tokens, lease, lease_ms, *_limit_args(limits)],
        )
        allowed, denied, retry_ms = (int(value) for value in answer[:3])
        pairs = [int(value) for value in answer[3:]]
        states = tuple(LimitState(pairs[2 * i], pairs[2 * i + 1]) for i in range(len(pairs) // 2))
        if allowed:
            return Verdict(True, states)
        return Verdict(False, states, limits[denied - 1], retry_ms)

    async def settle(self, limits: tuple[Limit, ...], token_delta: int, lease: str) -> None:
        await self._settle(
            keys=[limit.store_key for limit in limits],
            args=[token_delta, lease, *_limit_args(limits)],
        )

    async def close(self) -> None:
        await self._client.close()


def _limit_args(limits: tuple[Limit, ...]) -> list[str | int]:
    args: list[str | int] = []
    for limit in limits:
        args += (KIND_CODES[limit.kind], limit.limit)
    return args
