"""Budgets: spend in USD per key, user or team over a period, from the usage ledger.

Each worker caches a subject's spend in the current period for `ttl` seconds (read from the
ledger, plus its own rows not written yet) and adds its own costs as they happen. So a worker
refuses as soon as its own requests cross the budget, and the others within `ttl` plus the
ledger's flush interval: across workers and replicas a budget can be overshot by what is spent
in those seconds. Unlike rate limits, budgets survive restarts: the ledger is their record.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections import OrderedDict
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from chatservice.accounting.ledger import UsageLedger
from chatservice.accounting.tables import UsageEvent
from chatservice.db.outage import DATABASE_ERRORS, ThrottledLog
from chatservice.errors import ChatServiceError
from chatservice.observability import metrics

budget_log = ThrottledLog(logging.getLogger("chatservice.budgets"), interval=30.0)
_SUBJECT_COLUMNS = {"key": "key_id", "user": "user_id", "team": "team_id"}


class InsufficientQuotaError(ChatServiceError):
    """OpenAI's answer to an account out of credit: 429 `insufficient_quota`."""

    status_code = 429
    error_type = "insufficient_quota"
    default_code = "insufficient_quota"
    outcome = "over_budget"


@dataclass(frozen=True, slots=True)
class Budget:
    scope: str
    subject_id: uuid.UUID
    max_usd: float | None
    soft_usd: float | None
    period: str  # daily, weekly, monthly, none


def period_start(period: str, now: datetime) -> datetime | None:
    day = now.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    if period == "daily":
        return day
    if period == "weekly":
        return day - timedelta(days=day.weekday())
    if period == "monthly":
        return day.replace(day=1)
    return None


_Entry = tuple[float, float]  # (expires, spent)
_CacheKey = tuple[str, uuid.UUID, datetime | None]


class BudgetTracker:
    def __init__(
        self,
        sessionmaker: async_sessionmaker[AsyncSession],
        ledger: UsageLedger,
        ttl: float,
        timeout: float,
        max_size: int = 10_000,
    ) -> None:
        self.sessionmaker = sessionmaker
        self._ledger = ledger
        self._ttl = ttl
        self._timeout = timeout
        self._max_size = max_size
        self._spent: OrderedDict[_CacheKey, _Entry] = OrderedDict()

    async def check(self, budgets: tuple[Budget, ...]) -> None:
        """Refuse (InsufficientQuotaError) when a budget is spent; count a soft one passed."""
        now = datetime.now(UTC)
        for budget in budgets:
            spent = await self._spent_in_period(budget, period_start(budget.period, now))
            if budget.max_usd is not None and spent >= budget.max_usd:
                metrics.child(metrics.OVER_BUDGET, budget.scope, "hard").inc()
                raise InsufficientQuotaError(
                    f"This {budget.scope} has spent its budget of {budget.max_usd:g} USD"
                    + ("" if budget.period == "none" else f" for this {_period_noun(budget)}")
                    + "; ask an admin to raise it.",
                )
            if budget.soft_usd is not None and spent >= budget.soft_usd:
                metrics.child(metrics.OVER_BUDGET, budget.scope, "soft").inc()

    def add(self, budgets: tuple[Budget, ...], cost: float) -> None:
        """This worker's completion cost `cost`: its own next checks see it at once."""
        now = datetime.now(UTC)
        for budget in budgets:
            key = (budget.scope, budget.subject_id, period_start(budget.period, now))
            entry = self._spent.get(key)
            if entry is not None:
                self._spent[key] = (entry[0], entry[1] + cost)

    def forget(self) -> None:
        self._spent.clear()

    async def _spent_in_period(self, budget: Budget, start: datetime | None) -> float:
        key = (budget.scope, budget.subject_id, start)
        entry = self._spent.get(key)
        if entry is not None and entry[0] > time.monotonic():
            return entry[1]
        try:
            async with asyncio.timeout(self._timeout):
                spent = await self._load(budget, start)
        except DATABASE_ERRORS as exc:
            budget_log.warning("database unreachable: budgets from the cache", cause=exc)
            return entry[1] if entry is not None else 0.0
        spent += self._unwritten(budget, start)
        self._spent[key] = (time.monotonic() + self._ttl, spent)
        self._spent.move_to_end(key)
        while len(self._spent) > self._max_size:
            self._spent.popitem(last=False)
        return spent

    async def _load(self, budget: Budget, start: datetime | None) -> float:
        column = getattr(UsageEvent, _SUBJECT_COLUMNS[budget.scope])
        statement = select(func.coalesce(func.sum(UsageEvent.cost_usd), 0.0)).where(
            column == budget.subject_id
        )
        if start is not None:
            statement = statement.where(UsageEvent.created_at >= start)
        async with self.sessionmaker() as session:
            return float(await session.scalar(statement) or 0.0)

    def _unwritten(self, budget: Budget, start: datetime | None) -> float:
        field = _SUBJECT_COLUMNS[budget.scope]
        return sum(
            float(row["cost_usd"])
            for row in self._ledger.unwritten()
            if row[field] == budget.subject_id and (start is None or row["created_at"] >= start)
        )


def _period_noun(budget: Budget) -> str:
    return {"daily": "day", "weekly": "week", "monthly": "month"}[budget.period]
