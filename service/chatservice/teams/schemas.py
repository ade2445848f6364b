"""Request and response bodies of `/teams`."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from chatservice.kit.pagination import ListPage


class TeamCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=200)


class TeamOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    object: Literal["team"] = "team"
    id: uuid.UUID
    name: str
    created_at: datetime
    updated_at: datetime


class TeamList(ListPage):
    data: list[TeamOut]


class MemberAdd(BaseModel):
    model_config = ConfigDict(extra="forbid")

    user_id: uuid.UUID


class MemberOut(BaseModel):
    object: Literal["team.member"] = "team.member"
    id: uuid.UUID = Field(description="The member's user id.")
    team_id: uuid.UUID
    email: str
    created_at: datetime


class MemberList(ListPage):
    data: list[MemberOut]
