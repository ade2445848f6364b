"""Request and response bodies of `/users`."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from chatservice.kit.pagination import ListPage
from chatservice.users.emails import normalise_email
from chatservice.users.passwords import MAX_PASSWORD_LENGTH, MIN_PASSWORD_LENGTH
from chatservice.users.tables import Role

Email = Annotated[
    str, Field(max_length=320, json_schema_extra={"format": "email"}),
    AfterValidator(normalise_email),
]  # fmt: skip
Password = Annotated[str, Field(min_length=MIN_PASSWORD_LENGTH, max_length=MAX_PASSWORD_LENGTH)]


class UserCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    email: Email
    password: Password
    role: Role = Role.MEMBER


class UserUpdate(BaseModel):
    """Members may change their own email and password; role and active are for admins."""

    model_config = ConfigDict(extra="forbid")

    email: Email | None = None
    password: Password | None = None
    role: Role | None = None
    active: bool | None = None


class UserOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    object: Literal["user"] = "user"
    id: uuid.UUID
    email: str
    role: Role
    active: bool
    created_at: datetime
    updated_at: datetime


class UserList(ListPage):
    data: list[UserOut]
