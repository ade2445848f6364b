"""Accounting of completions (chat, legacy completions, embeddings): admission (budgets, rate
limits) before the backend is called, and at the end one ledger row and the settlement of what
admission reserved.

A request costs at most one awaited store round trip (the admission check), and none when its
key, user and team have no limits; the settlement is sent by a background task.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import math
import secrets
import sqlite3
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from redis.exceptions import RedisError

from chatservice.accounting.budgets import Budget, BudgetTracker
from chatservice.accounting.event_ids import new_event_id
from chatservice.accounting.headers import duration, rate_limit_headers
from chatservice.accounting.ledger import UsageLedger
from chatservice.accounting.limit_settings import LimitSettings, Subject
from chatservice.accounting.limits import Limit, LimitStore
from chatservice.accounting.prices import cost_usd
from chatservice.chat.usage import estimate_prompt_tokens
from chatservice.config import ModelRoute
from chatservice.db.outage import ThrottledLog
from chatservice.errors import ChatServiceError, RateLimitError, ServiceUnavailableError
from chatservice.inference.base import Api, Payload
from chatservice.keys.service import Principal
from chatservice.observability import context, metrics

store_log = ThrottledLog(logging.getLogger("chatservice.ratelimit"), interval=30.0)
error_log = logging.getLogger("chatservice.errors")
# What a store can fail with: Redis down or slow, the pod's file locked too long.
STORE_ERRORS = (RedisError, OSError, TimeoutError, sqlite3.Error)
_KIND_TEXT = {
    "requests": "requests per minute",
    "tokens": "tokens per minute",
    "concurrent": "concurrent requests",
}


def subjects_of(principal: Principal) -> tuple[Subject, ...]:
    """The key, its user and its team, for those the principal has."""
    found: list[Subject] = []
    for scope, subject_id in (
        ("key", principal.key_id),
        ("user", principal.user_id),
        ("team", principal.team_id),
    ):
        if subject_id is not None:
            found.append((scope, subject_id))
    return tuple(found)


@dataclass(slots=True)
class Admission:
    """One admitted request: who it is from, what it reserved, and its headers."""

    accounting: Accounting
    principal: Principal
    route: ModelRoute
    api: Api
    stream: bool
    limits: tuple[Limit, ...] = ()
    budgets: tuple[Budget, ...] = ()
    reserved_tokens: int = 0
    lease: str = ""
    headers: dict[str, str] = field(default_factory=dict)
    created_at: datetime = field(default_factory=lambda: datetime.now(UTC))

    def finished(
        self,
        *,
        outcome: str,
        status: int,
        usage: Any,
        latency: float,
        time_to_first_token: float | None,
        upstream: Any,
    ) -> None:
        """Called once when the completion ended, however it ended; never waits."""
        prompt, completion, estimated = _tokens(usage)
        cost = cost_usd(self.route, prompt, completion)
        if cost > 0:
            metrics.child(metrics.SPEND, self.route.name).inc(cost)
            if self.budgets:
                self.accounting.budgets.add(self.budgets, cost)
        self._record(
            outcome=outcome,
            status=status,
            upstream=str(upstream or self.route.upstream_model or self.route.backend),
            tokens=(prompt, completion, estimated),
            cost=cost,
            latency=latency,
            time_to_first_token=time_to_first_token,
        )
        if self.limits:
            self.accounting.settle_later(self, prompt + completion - self.reserved_tokens)

    def refused(self, error: ChatServiceError, latency: float) -> None:
        """Admission refused the request (a budget, a rate limit, the store down and failing
        closed): a row of its own, with no tokens and no upstream, so the ledger shows it."""
        self._record(
            outcome=error.outcome,
            status=error.status_code,
            upstream=None,
            tokens=(0, 0, False),
            cost=0.0,
            latency=latency,
            time_to_first_token=None,
        )

    def _record(
        self,
        *,
        outcome: str,
        status: int,
        upstream: str | None,
        tokens: tuple[int, int, bool],
        cost: float,
        latency: float,
        time_to_first_token: float | None,
    ) -> None:
        prompt, completion, estimated = tokens
        record = context.current_record()
        self.accounting.ledger.record(
            {
                "id": new_event_id(),
                "created_at": self.created_at,
                "request_id": record.request_id if record is not None else "",
                "key_id": self.principal.key_id,
                "user_id": self.principal.user_id,
                "team_id": self.principal.team_id,
                "model": self.route.name,
                "api": self.api,
                "upstream": upstream,
                "stream": self.stream,
                "prompt_tokens": prompt,
                "completion_tokens": completion,
                "total_tokens": prompt + completion,
                "tokens_estimated": estimated,
                "outcome": outcome,
                "status": status,
                "latency_ms": round(latency * 1000, 3),
                "time_to_first_token_ms": None
                if time_to_first_token is None
                else round(time_to_first_token * 1000, 3),
                "cost_usd": cost,
            }
        )


def _tokens(usage: Any) -> tuple[int, int, bool]:
    if not isinstance(usage, dict):
        return 0, 0, False
    prompt, completion = usage.get("prompt_tokens"), usage.get("completion_tokens")
    return (
        prompt if isinstance(prompt, int) else 0,
        completion if isinstance(completion, int) else 0,
        usage.get("estimated") is True,
    )


class Accounting:
    def __init__(
        self,
        ledger: UsageLedger,
        limit_settings: LimitSettings,
        budgets: BudgetTracker,
        store: LimitStore,
        *,
        failure_mode: str,
        timeout: float,
        lease_seconds: float,
        retry_after: int,
    ) -> None:
        self.ledger = ledger
        self.limit_settings = limit_settings
        self.budgets = budgets
        self.store = store
        self._fail_open = failure_mode == "open"
        self._timeout = timeout
        self._lease_ms = math.ceil(lease_seconds * 1000)
        self._retry_after = retry_after
        # After a failed check the store is left alone for a moment: requests meanwhile get
        # the failure mode at once instead of each waiting out the timeout.
        self._store_down_until = 0.0
        self._settling: set[asyncio.Future[Any]] = set()

    async def admit(
        self,
        principal: Principal,
        route: ModelRoute,
        payload: Payload,
        api: Api = "chat/completions",
    ) -> Admission:
        started = time.perf_counter()
        admission = Admission(self, principal, route, api, bool(payload.get("stream")))
        try:
            return await self._admit(admission, payload)
        except ChatServiceError as exc:
            admission.refused(exc, time.perf_counter() - started)
            raise

    async def _admit(self, admission: Admission, payload: Payload) -> Admission:
        route = admission.route
        policy = await self.limit_settings.get(subjects_of(admission.principal))
        if policy.budgets:
            # Before the rate limits: a refused request takes nothing from them.
            await self.budgets.check(policy.budgets)
            admission.budgets = policy.budgets
        limits = policy.limits
        if not limits:
            return admission
        tokens = reserved_tokens(route, payload)
        lease = secrets.token_hex(16)
        if time.monotonic() < self._store_down_until:
            return self._store_failed(admission, None)
        try:
            async with asyncio.timeout(self._timeout):
                verdict = await self.store.admit(limits, tokens, lease, self._lease_ms)
        except STORE_ERRORS as exc:
            self._store_down_until = time.monotonic() + 1.0
            return self._store_failed(admission, exc)
        if not verdict.allowed:
            assert verdict.denied is not None  # noqa: S101 - a refusal names its limit
            raise _refusal(verdict.denied, verdict.retry_after_ms, verdict.states, limits)
        admission.limits = limits
        admission.reserved_tokens = tokens
        admission.lease = lease
        admission.headers = rate_limit_headers(limits, verdict.states)
        return admission

    def _store_failed(self, admission: Admission, exc: BaseException | None) -> Admission:
        mode = "open" if self._fail_open else "closed"
        metrics.child(metrics.RATE_LIMIT_STORE_ERRORS, mode).inc()
        if exc is not None:
            store_log.error(f"rate limit store unreachable: failing {mode}", cause=exc)
        if self._fail_open:
            return admission
        raise ServiceUnavailableError(
            "The service cannot check rate limits right now; retry shortly.",
            code="rate_limits_unavailable",
            headers={"Retry-After": str(self._retry_after)},
        )

    def settle_later(self, admission: Admission, token_delta: int) -> None:
        """Send the settlement and go on. No task: nothing here waits for it (a task, and the
        timeout around its wait, cost more CPU than the settlement itself); a timer gives up
        on it after 4 timeouts."""
        try:
            sent = self.store.settle(admission.limits, token_delta, admission.lease)
        except STORE_ERRORS as exc:
            self._settle_failed(exc)
            return
        self._settling.add(sent)
        give_up = asyncio.get_running_loop().call_later(self._timeout * 4, sent.cancel)
        sent.add_done_callback(functools.partial(self._settled, give_up))

    def _settled(self, give_up: asyncio.TimerHandle, sent: asyncio.Future[Any]) -> None:
        give_up.cancel()
        self._settling.discard(sent)
        if sent.cancelled():
            self._settle_failed(TimeoutError("no answer from the rate limit store in time"))
        elif (error := sent.exception()) is not None:
            if isinstance(error, STORE_ERRORS):
                self._settle_failed(error)
            else:  # a bug, not an outage
                error_log.error("rate limit settlement failed", exc_info=error)

    @staticmethod
    def _settle_failed(exc: BaseException) -> None:
        # The lease ends by itself at its expiry; the tokens stay as reserved.
        store_log.warning("rate limit settlement failed", cause=exc)

    async def close(self, seconds: float) -> None:
        """Wait (at most `seconds`) for the settlements still on their way, then disconnect."""
        if self._settling:
            await asyncio.wait(set(self._settling), timeout=seconds)
        await self.store.close()


def reserved_tokens(route: ModelRoute, payload: Payload) -> int:
    """What admission reserves: the prompt's estimate and the most the answer may use."""
    most = 0
    for name in (route.max_tokens_field, "max_tokens", "max_completion_tokens"):
        value = payload.get(name)
        if isinstance(value, int) and value > 0:
            most = value
            break
    choices = payload.get("n")
    return estimate_prompt_tokens(payload) + most * (choices if isinstance(choices, int) else 1)


def _refusal(
    limit: Limit, retry_ms: int, states: tuple[Any, ...], limits: tuple[Limit, ...]
) -> RateLimitError:
    metrics.child(metrics.RATE_LIMITED, limit.kind, limit.scope).inc()
    context.set_outcome("rate_limited")
    what = _KIND_TEXT[limit.kind]
    headers = rate_limit_headers((limit,), states)
    if retry_ms < 0:
        return RateLimitError(
            f"Request too large for {what} on this {limit.scope}: limit {limit.limit}. "
            "Reduce the prompt or max_tokens.",
            headers=headers,
        )
    if limit.kind == "concurrent":
        retry_ms = 1000  # a lease ends when its request does: soon, but nobody knows when
    headers["Retry-After"] = str(max(1, math.ceil(retry_ms / 1000)))
    return RateLimitError(
        f"Rate limit reached for {what} on this {limit.scope}: limit {limit.limit}. "
        f"Please try again in {duration(retry_ms)}.",
        headers=headers,
    )
