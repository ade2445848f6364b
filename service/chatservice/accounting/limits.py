"""Rate limits as the stores see them: what to check for one request, and what they answered.

Requests and tokens per minute are GCRA (a token bucket holding a minute's worth, refilled
continuously): each limit is one timestamp, the "theoretical arrival time", so a check is O(1)
and a settlement moves that time by the difference between reserved and used tokens. Concurrent
requests are leases that end when the request does, or after `lease_seconds` if the worker that
held one died.
"""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass
from typing import Any, Literal, NamedTuple, Protocol

WINDOW_MS = 60_000.0
LimitKind = Literal["requests", "tokens", "concurrent"]
# The store's one-letter names for the kinds (Redis script arguments, file rows).
KIND_CODES: dict[LimitKind, str] = {"requests": "r", "tokens": "t", "concurrent": "c"}


@dataclass(frozen=True, slots=True)
class Limit:
    scope: str  # key, user or team
    subject_id: uuid.UUID
    kind: LimitKind
    limit: int

    @property
    def store_key(self) -> str:
        return f"chatservice:ratelimit:{self.scope}:{self.subject_id}:{KIND_CODES[self.kind]}"


class LimitState(NamedTuple):
    """After a check: what is left of one limit, and in how many ms it is whole again. (A
    tuple: made per limit per request, it is built in a third of a frozen dataclass's time.)"""

    remaining: int
    reset_ms: int


@dataclass(frozen=True, slots=True)
class Verdict:
    allowed: bool
    states: tuple[LimitState, ...]  # one per checked limit, in order
    denied: Limit | None = None
    retry_after_ms: int = 0


class LimitStore(Protocol):
    async def admit(
        self, limits: tuple[Limit, ...], tokens: int, lease: str, lease_ms: int
    ) -> Verdict:
        """Check every limit and, only if all allow it, take the request (one unit of each
        requests limit, `tokens` of each tokens limit, a lease of each concurrent one)."""
        ...

    def settle(
        self, limits: tuple[Limit, ...], token_delta: int, lease: str
    ) -> asyncio.Future[Any]:
        """The request ended: move its tokens by `token_delta` (used minus reserved) and end
        its leases. Sent at once; nobody waits for it, so no task: the future ends when the
        store has done it (or failed)."""
        ...

    async def close(self) -> None: ...
