"""The limits and budgets set on a request's key, user and team: read from the database, cached
per worker for `ttl` seconds so that a request with a cached principal reads nothing."""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections import OrderedDict
from dataclasses import dataclass

from sqlalchemy import select, tuple_
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from chatservice.accounting.budgets import Budget
from chatservice.accounting.limits import Limit, LimitKind
from chatservice.accounting.tables import SubjectLimits
from chatservice.db.outage import DATABASE_ERRORS, ThrottledLog

Subject = tuple[str, uuid.UUID]  # (scope, id)
SCOPES = ("key", "user", "team")
_COLUMNS: tuple[tuple[LimitKind, str], ...] = (
    ("requests", "requests_per_minute"),
    ("tokens", "tokens_per_minute"),
    ("concurrent", "max_concurrent"),
)
limits_log = ThrottledLog(logging.getLogger("chatservice.limits"), interval=30.0)


@dataclass(frozen=True, slots=True)
class Policy:
    """What applies to one request: its subjects' rate limits and budgets."""

    limits: tuple[Limit, ...] = ()
    budgets: tuple[Budget, ...] = ()


NO_POLICY = Policy()


def budget_of(row: SubjectLimits) -> Budget | None:
    if row.max_budget_usd is None and row.soft_budget_usd is None:
        return None
    return Budget(
        row.scope, row.subject_id, row.max_budget_usd, row.soft_budget_usd, row.budget_period
    )


def limits_of(row: SubjectLimits) -> tuple[Limit, ...]:
    found: list[Limit] = []
    for kind, column in _COLUMNS:
        value = getattr(row, column)
        if value is not None:
            found.append(Limit(row.scope, row.subject_id, kind, value))
    return tuple(found)


class LimitSettings:
    def __init__(
        self,
        sessionmaker: async_sessionmaker[AsyncSession],
        ttl: float,
        timeout: float,
        max_size: int = 10_000,
    ) -> None:
        self.sessionmaker = sessionmaker
        self._ttl = ttl
        self._timeout = timeout
        self._max_size = max_size
        self._cache: OrderedDict[tuple[Subject, ...], tuple[float, Policy]] = OrderedDict()

    async def get(self, subjects: tuple[Subject, ...]) -> Policy:
        if not subjects:
            return NO_POLICY
        now = time.monotonic()
        cached = self._cache.get(subjects)
        if cached is not None and cached[0] > now:
            return cached[1]
        try:
            async with asyncio.timeout(self._timeout):
                limits = await self._load(subjects)
        except DATABASE_ERRORS as exc:
            # The last known limits, else none: a database outage does not refuse requests.
            limits_log.warning("database unreachable: rate limits from the cache", cause=exc)
            return cached[1] if cached is not None else NO_POLICY
        self._cache[subjects] = (now + self._ttl, limits)
        self._cache.move_to_end(subjects)
        while len(self._cache) > self._max_size:
            self._cache.popitem(last=False)
        return limits

    async def _load(self, subjects: tuple[Subject, ...]) -> Policy:
        async with self.sessionmaker() as session:
            rows = await session.scalars(
                select(SubjectLimits).where(
                    tuple_(SubjectLimits.scope, SubjectLimits.subject_id).in_(subjects)
                )
            )
            order = {subject: index for index, subject in enumerate(subjects)}
            found = sorted(rows, key=lambda row: order[(row.scope, row.subject_id)])
        budgets = (budget_of(row) for row in found)
        return Policy(
            limits=tuple(limit for row in found for limit in limits_of(row)),
            budgets=tuple(budget for budget in budgets if budget is not None),
        )

    def forget(self) -> None:
        """After a change through this worker's API: read again on the next request."""
        self._cache.clear()
