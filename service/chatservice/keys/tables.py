"""The `api_keys` table, and the invalidation log that tells every worker to drop cached keys."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, DateTime, ForeignKey, Integer, String, Uuid
from sqlalchemy.orm import Mapped, mapped_column

from chatservice.db.clock import utc_now
from chatservice.db.engine import Base
from chatservice.teams import tables as _teams  # noqa: F401 - the tables keys refer to


class ApiKey(Base):
    __tablename__ = "api_keys"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    name: Mapped[str] = mapped_column(String(200))
    # SHA-256 of the whole key: keys are 256-bit random, so a fast hash is enough (no
    # dictionary to attack) and keeps the per-request check cheap.
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    # The first characters, shown to people so they can tell their keys apart.
    display_prefix: Mapped[str] = mapped_column(String(16))
    user_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), index=True
    )
    team_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("teams.id", ondelete="SET NULL"), index=True
    )
    # Keys made by `chatservice create-key --admin`; API-made keys have their owner's rights.
    is_admin: Mapped[bool] = mapped_column(default=False)
    # None: every configured model; otherwise the public model names this key may call.
    allowed_models: Mapped[list[str] | None] = mapped_column(JSON)
    # The client's own free-form JSON object; never interpreted by the service.
    key_metadata: Mapped[dict[str, Any] | None] = mapped_column("metadata", JSON)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utc_now)
    updated_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), default=utc_now, onupdate=utc_now
    )
    expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # The secret a rotation replaced, accepted until `previous_key_expires_at`.
    previous_key_hash: Mapped[str | None] = mapped_column(String(64), unique=True)
    previous_key_expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class AuthInvalidation(Base):
    """One row per change that can make a cached key wrong (revoked, rotated, owner
    deactivated, ...). Workers poll the highest id and empty their key caches when it moves."""

    __tablename__ = "auth_invalidations"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utc_now)
