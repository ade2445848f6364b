"""The interface every inference backend implements."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from chatservice.config import ModelRoute

Payload = dict[str, Any]
# One event of a relayed stream: the chunk, for what the gateway reads in it (usage, finish
# reasons, content), and the bytes of its `data:` field as the client gets them, so that a
# chunk the gateway does not change is relayed without being encoded again.
StreamEvent = tuple[Payload, bytes]
# The OpenAI APIs the gateway serves, by their path: also the upstream's path for them.
Api = Literal["chat/completions", "completions", "embeddings"]


@dataclass(slots=True)
class CallStats:
    """What one request spent waiting on its upstream, so the gateway can report its own cost."""

    upstream_seconds: float = 0.0
    attempts: int = 0
    # The model the upstream says answered, before the public name replaces it (for traces).
    upstream_model: Any = None
    # Which route and endpoint answered (`model/ordinal`), for `x-chatservice-upstream`.
    answered_by: str | None = None


@dataclass(frozen=True, slots=True)
class BackendHealth:
    """`degraded`: the upstream answers but cannot serve this route (our key refused, the
    model not listed, 5xx); `unavailable`: no answer at all."""

    status: Literal["ok", "degraded", "unavailable"]
    error: str | None = None


HEALTHY = BackendHealth("ok")


class Answering(Protocol):
    """What a completion needs of a backend: a whole answer, or its stream."""

    async def complete(self, route: ModelRoute, payload: Payload, stats: CallStats) -> Payload:
        """Return a `chat.completion` object for a non-streaming request."""
        ...

    def stream(
        self, route: ModelRoute, payload: Payload, stats: CallStats
    ) -> AsyncIterator[list[StreamEvent]]:
        """Yield the `chat.completion.chunk` events as they arrive: a non-empty list per read
        from the upstream (so that what arrived together is relayed in one write); the last
        chunk carries `usage`."""
        ...


class ChatBackend(Answering, Protocol):
    async def check(self, route: ModelRoute) -> BackendHealth:
        """Whether the backend can serve this route now, and if not, why."""
        ...
