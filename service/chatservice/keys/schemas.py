"""Request and response bodies of `/keys`."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from chatservice.kit.pagination import ListPage

# OpenAI's metadata shape: up to 16 string pairs. Budgets and limits get fields of their own.
Metadata = Annotated[
    dict[Annotated[str, Field(max_length=64)], Annotated[str, Field(max_length=512)]],
    Field(max_length=16),
]
ModelNames = Annotated[
    list[Annotated[str, Field(min_length=1, max_length=200)]], Field(max_length=256)
]
MAX_GRACE_SECONDS = 30 * 86_400


class KeyCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=200)
    user_id: uuid.UUID | None = Field(
        default=None, description="The owner; members may only give themselves (the default)."
    )
    team_id: uuid.UUID | None = None
    allowed_models: ModelNames | None = Field(
        default=None, description="Public model names the key may use; omitted: all."
    )
    expires_at: datetime | None = None
    metadata: Metadata | None = None


class KeyUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(default=None, min_length=1, max_length=200)
    allowed_models: ModelNames | None = None
    expires_at: datetime | None = None
    metadata: Metadata | None = None


class KeyRotate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    grace_seconds: float | None = Field(
        default=None, ge=0, le=MAX_GRACE_SECONDS,
        description="Seconds the old secret keeps working (CHATSERVICE_KEY_ROTATION_GRACE).",
    )  # fmt: skip


class KeyOut(BaseModel):
    """A key as listed: its display prefix, never its secret or hash."""

    object: Literal["api_key"] = "api_key"
    id: uuid.UUID
    name: str
    display_prefix: str
    user_id: uuid.UUID | None
    team_id: uuid.UUID | None
    allowed_models: list[str] | None
    metadata: dict[str, str] | None
    created_at: datetime
    updated_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None
    previous_key_expires_at: datetime | None


class KeyCreated(KeyOut):
    key: str = Field(description="The secret: shown this once, stored only as a hash.")


class KeyList(ListPage):
    data: list[KeyOut]
