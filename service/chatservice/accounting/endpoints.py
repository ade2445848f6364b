"""`GET /usage` (spend per key, user, team, model or day; JSON or CSV) and
`GET`/`PUT /limits/{scope}/{subject_id}` (rate limits, admins only)."""

from __future__ import annotations

import csv
import io
import uuid
from datetime import UTC, datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Query
from fastapi.responses import Response
from sqlalchemy import Executable, delete
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from chatservice.accounting.schemas import (
    GroupBy,
    Scope,
    SubjectLimitsBody,
    UsageReport,
)
from chatservice.accounting.tables import SubjectLimits
from chatservice.accounting.usage_query import UsageFilter, totals, usage_groups
from chatservice.config import API_PREFIX
from chatservice.errors import PermissionDeniedError
from chatservice.keys.service import Principal
from chatservice.kit.api_docs import AUTH_ERRORS, AUTHENTICATED, error_responses
from chatservice.kit.deps import CurrentKey, RuntimeDep, SessionDep

router = APIRouter(prefix=API_PREFIX, tags=["accounting"])

CSV_COLUMNS = ("group", "requests", "prompt_tokens", "completion_tokens", "total_tokens",
               "cost_usd")  # fmt: skip


def _utc(moment: datetime | None) -> datetime | None:
    if moment is not None and moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)
    return moment


@router.get(
    "/usage",
    response_model=UsageReport,
    responses={
        200: {"content": {"text/csv": {}}, "description": "The report (CSV with format=csv)"},
        **error_responses(400, *AUTH_ERRORS),
    },
    openapi_extra=AUTHENTICATED,
    summary="Usage and spend from the ledger, with totals (members see their own keys')",
)
async def get_usage(
    session: SessionDep,
    key: CurrentKey,
    group_by: GroupBy = "model",
    start: Annotated[datetime | None, Query(description="From (inclusive), ISO 8601")] = None,
    end: Annotated[datetime | None, Query(description="Until (exclusive), ISO 8601")] = None,
    key_id: uuid.UUID | None = None,
    user_id: uuid.UUID | None = None,
    team_id: uuid.UUID | None = None,
    model: str | None = None,
    format: Literal["json", "csv"] = "json",
) -> Response:
    where = UsageFilter(_utc(start), _utc(end), key_id, user_id, team_id, model)
    groups = await usage_groups(session, key, group_by, where)
    report = UsageReport(
        group_by=group_by, start=where.start, end=where.end, data=groups, totals=totals(groups)
    )
    if format == "csv":
        out = io.StringIO()
        writer = csv.writer(out)
        writer.writerow(CSV_COLUMNS)
        for group in groups:
            figures = group.model_dump()
            writer.writerow([figures[column] or "" if column == "group" else figures[column]
                             for column in CSV_COLUMNS])  # fmt: skip
        return Response(
            out.getvalue(),
            media_type="text/csv",
            headers={"Content-Disposition": f'attachment; filename="usage-by-{group_by}.csv"'},
        )
    return Response(report.model_dump_json(), media_type="application/json")


def _require_admin(principal: Principal) -> None:
    if not principal.is_admin:
        raise PermissionDeniedError("Only admin keys can read or set rate limits.")


LIMITS_PATH = "/limits/{scope}/{subject_id}"
_LIMITS_ERRORS = error_responses(400, *AUTH_ERRORS, 403)


@router.get(
    LIMITS_PATH,
    summary="The rate limits and budget of a key, user or team",
    response_model=SubjectLimitsBody,
    responses=_LIMITS_ERRORS,
    openapi_extra=AUTHENTICATED,
)
async def get_limits(
    scope: Scope, subject_id: uuid.UUID, session: SessionDep, key: CurrentKey
) -> SubjectLimitsBody:
    _require_admin(key)
    row = await session.get(SubjectLimits, (scope, subject_id))
    if row is None:
        return SubjectLimitsBody()
    return SubjectLimitsBody(
        requests_per_minute=row.requests_per_minute,
        tokens_per_minute=row.tokens_per_minute,
        max_concurrent=row.max_concurrent,
        max_budget_usd=row.max_budget_usd,
        soft_budget_usd=row.soft_budget_usd,
        budget_period=row.budget_period,
    )


@router.put(
    LIMITS_PATH,
    summary="Set the rate limits and budget of a key, user or team (all null: none); workers "
    "apply them within `CHATSERVICE_LIMITS_CACHE_TTL` seconds",
    response_model=SubjectLimitsBody,
    responses=_LIMITS_ERRORS,
    openapi_extra=AUTHENTICATED,
)
async def put_limits(
    scope: Scope,
    subject_id: uuid.UUID,
    body: SubjectLimitsBody,
    session: SessionDep,
    runtime: RuntimeDep,
    key: CurrentKey,
) -> SubjectLimitsBody:
    _require_admin(key)
    if body == SubjectLimitsBody():
        await session.execute(
            delete(SubjectLimits).where(
                SubjectLimits.scope == scope, SubjectLimits.subject_id == subject_id
            )
        )
    else:
        await session.execute(_upsert(session, scope, subject_id, body))
    await session.flush()
    runtime.accounting.limit_settings.forget()
    runtime.accounting.budgets.forget()
    return body


def _upsert(
    session: AsyncSession, scope: Scope, subject_id: uuid.UUID, body: SubjectLimitsBody
) -> Executable:
    """One statement, so that concurrent first PUTs of a subject cannot both insert (a
    select-then-insert lets the loser fail on the primary key)."""
    values = {**body.model_dump(), "updated_at": datetime.now(UTC)}
    dialect = session.bind.dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    statement = insert(SubjectLimits).values(scope=scope, subject_id=subject_id, **values)
    return statement.on_conflict_do_update(
        index_elements=[SubjectLimits.scope, SubjectLimits.subject_id], set_=values
    )
