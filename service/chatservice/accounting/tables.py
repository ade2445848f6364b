"""ORM tables of accounting: the usage ledger and the limits set per key, user or team.

Key, user and team are plain ids without foreign keys: a ledger row outlives the key it names,
and limits are kept apart from the identity tables so each side changes on its own.
"""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import Boolean, DateTime, Float, Integer, String, Uuid
from sqlalchemy.orm import Mapped, mapped_column

from chatservice.db.engine import Base


class UsageEvent(Base):
    """One completion (chat, legacy or embeddings), whatever its outcome. The id is made by the
    worker that served it, so a batch written again after a lost answer from the database adds
    no duplicates."""

    __tablename__ = "usage_events"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)
    request_id: Mapped[str] = mapped_column(String(128))
    key_id: Mapped[uuid.UUID | None] = mapped_column(Uuid, index=True)
    user_id: Mapped[uuid.UUID | None] = mapped_column(Uuid, index=True)
    team_id: Mapped[uuid.UUID | None] = mapped_column(Uuid, index=True)
    model: Mapped[str] = mapped_column(String(200))
    # Which API was called, by its path: chat/completions, completions or embeddings.
    api: Mapped[str] = mapped_column(String(32), server_default="chat/completions")
    upstream: Mapped[str | None] = mapped_column(String(200))
    stream: Mapped[bool] = mapped_column(Boolean)
    prompt_tokens: Mapped[int] = mapped_column(Integer)
    completion_tokens: Mapped[int] = mapped_column(Integer)
    total_tokens: Mapped[int] = mapped_column(Integer)
    # Whether this service counted the tokens (the upstream sent no usage).
    tokens_estimated: Mapped[bool] = mapped_column(Boolean)
    outcome: Mapped[str] = mapped_column(String(40))
    status: Mapped[int] = mapped_column(Integer)
    latency_ms: Mapped[float] = mapped_column(Float)
    time_to_first_token_ms: Mapped[float | None] = mapped_column(Float)
    cost_usd: Mapped[float] = mapped_column(Float)


class SubjectLimits(Base):
    """Rate limits and budget of one key, user or team; a missing row or a null field: none."""

    __tablename__ = "accounting_limits"

    scope: Mapped[str] = mapped_column(String(8), primary_key=True)
    subject_id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    requests_per_minute: Mapped[int | None] = mapped_column(Integer)
    tokens_per_minute: Mapped[int | None] = mapped_column(Integer)
    max_concurrent: Mapped[int | None] = mapped_column(Integer)
    # Spend in USD per period (daily, weekly, monthly: UTC calendar; none: ever): past
    # `max_budget_usd` requests are refused, past `soft_budget_usd` counted.
    max_budget_usd: Mapped[float | None] = mapped_column(Float)
    soft_budget_usd: Mapped[float | None] = mapped_column(Float)
    budget_period: Mapped[str] = mapped_column(String(8), default="none")
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
