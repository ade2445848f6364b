"""Usage from the ledger: requests, tokens and cost summed per key, user, team, model or day."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, func, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import InstrumentedAttribute

from chatservice.accounting.schemas import GroupBy, UsageFigures, UsageGroup
from chatservice.accounting.tables import UsageEvent
from chatservice.keys.service import Principal


@dataclass(frozen=True, slots=True)
class UsageFilter:
    start: datetime | None = None
    end: datetime | None = None
    key_id: uuid.UUID | None = None
    user_id: uuid.UUID | None = None
    team_id: uuid.UUID | None = None
    model: str | None = None


def visible_to(principal: Principal) -> list[ColumnElement[bool]]:
    """Admins see everything; a member key its user's keys, or itself without a user."""
    if principal.is_admin:
        return []
    if principal.user_id is not None:
        return [UsageEvent.user_id == principal.user_id]
    return [UsageEvent.key_id == principal.key_id]


def _group_column(group_by: GroupBy, dialect: str) -> ColumnElement[Any]:
    if group_by == "day":
        if dialect == "postgresql":
            return func.to_char(func.timezone("UTC", UsageEvent.created_at), "YYYY-MM-DD")
        return func.substr(UsageEvent.created_at, 1, 10)  # SQLite stores ISO text in UTC
    columns: dict[str, InstrumentedAttribute[Any]] = {
        "key": UsageEvent.key_id,
        "user": UsageEvent.user_id,
        "team": UsageEvent.team_id,
        "model": UsageEvent.model,
        "api": UsageEvent.api,
    }
    return columns[group_by].expression


async def usage_groups(
    session: AsyncSession, principal: Principal, group_by: GroupBy, where: UsageFilter
) -> list[UsageGroup]:
    group = _group_column(group_by, session.bind.dialect.name).label("grp")
    conditions = visible_to(principal)
    if where.start is not None:
        conditions.append(UsageEvent.created_at >= where.start)
    if where.end is not None:
        conditions.append(UsageEvent.created_at < where.end)
    for column, value in (
        (UsageEvent.key_id, where.key_id),
        (UsageEvent.user_id, where.user_id),
        (UsageEvent.team_id, where.team_id),
        (UsageEvent.model, where.model),
    ):
        if value is not None:
            conditions.append(column == value)
    statement = (
        select(
            group,
            func.count(),
            func.coalesce(func.sum(UsageEvent.prompt_tokens), 0),
            func.coalesce(func.sum(UsageEvent.completion_tokens), 0),
            func.coalesce(func.sum(UsageEvent.total_tokens), 0),
            func.coalesce(func.sum(UsageEvent.cost_usd), 0.0),
        )
        .where(*conditions)
        .group_by(group)
        .order_by(group)
    )
    rows = (await session.execute(statement)).all()
    return [
        UsageGroup(
            group=None if row[0] is None else str(row[0]),
            requests=int(row[1]),
            prompt_tokens=int(row[2]),
            completion_tokens=int(row[3]),
            total_tokens=int(row[4]),
            cost_usd=float(row[5]),
        )
        for row in rows
    ]


def totals(groups: list[UsageGroup]) -> UsageFigures:
    return UsageFigures(
        requests=sum(g.requests for g in groups),
        prompt_tokens=sum(g.prompt_tokens for g in groups),
        completion_tokens=sum(g.completion_tokens for g in groups),
        total_tokens=sum(g.total_tokens for g in groups),
        cost_usd=sum(g.cost_usd for g in groups),
    )
