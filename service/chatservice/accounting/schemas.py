"""The usage report and the limits of one key, user or team, as the admin API shows them."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

GroupBy = Literal["key", "user", "team", "model", "api", "day"]
Scope = Literal["key", "user", "team"]
# Large enough for any real limit, small enough for a 32-bit column.
_MAX_LIMIT = 2_000_000_000


class UsageFigures(BaseModel):
    requests: int
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int
    cost_usd: float


class UsageGroup(UsageFigures):
    group: str | None = Field(
        description="The key, user or team id, the model, the API (`chat/completions`, "
        "`completions`, `embeddings`) or the day (UTC, YYYY-MM-DD); null "
        "for requests without one (the bootstrap admin key has no id)."
    )


class UsageReport(BaseModel):
    object: Literal["usage_report"] = "usage_report"
    group_by: GroupBy
    start: datetime | None
    end: datetime | None
    data: list[UsageGroup]
    totals: UsageFigures


BudgetPeriod = Literal["daily", "weekly", "monthly", "none"]
_MAX_USD = 1e12


class SubjectLimitsBody(BaseModel):
    """Rate limits and budget; null (or left out): no limit of that kind."""

    model_config = ConfigDict(extra="forbid")

    requests_per_minute: int | None = Field(default=None, ge=1, le=_MAX_LIMIT)
    tokens_per_minute: int | None = Field(default=None, ge=1, le=_MAX_LIMIT)
    max_concurrent: int | None = Field(default=None, ge=1, le=_MAX_LIMIT)
    max_budget_usd: float | None = Field(
        default=None, ge=0, le=_MAX_USD, description="Past this spend in the period: 429."
    )
    soft_budget_usd: float | None = Field(
        default=None, ge=0, le=_MAX_USD, description="Past this spend: counted, not refused."
    )
    budget_period: BudgetPeriod = Field(
        default="none", description="UTC calendar day, week (from Monday) or month; none: ever."
    )
