"""An upstream's legacy completions or embeddings API behind the interface a completion calls,
so that the relayed endpoints share chat's bookkeeping and accounting."""

from __future__ import annotations

from collections.abc import AsyncIterator

from chatservice.config import ModelRoute
from chatservice.inference.base import Api, CallStats, Payload, StreamEvent
from chatservice.inference.openai_compatible import OpenAIBackend


class RelayedApi:
    def __init__(self, backend: OpenAIBackend, api: Api) -> None:
        self._backend = backend
        self._api = api

    async def complete(self, route: ModelRoute, payload: Payload, stats: CallStats) -> Payload:
        return await self._backend.relay(route, self._api, payload, stats)

    def stream(
        self, route: ModelRoute, payload: Payload, stats: CallStats
    ) -> AsyncIterator[list[StreamEvent]]:
        return self._backend.stream(route, payload, stats, self._api)
