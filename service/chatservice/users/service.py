"""Creating, reading and changing users. Services flush; the request's session commits."""

from __future__ import annotations

import uuid

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from chatservice.errors import ConflictError, NotFoundError
from chatservice.keys.invalidation import record_key_change
from chatservice.kit.pagination import page_of
from chatservice.users.passwords import hash_password
from chatservice.users.schemas import UserCreate, UserList, UserOut, UserUpdate
from chatservice.users.tables import User


def _taken(email: str) -> ConflictError:
    return ConflictError(
        f"A user with the email {email!r} already exists.", param="email", code="email_taken"
    )


async def _flush_unique(session: AsyncSession, email: str) -> None:
    try:
        await session.flush()
    except IntegrityError:
        raise _taken(email) from None


async def create_user(session: AsyncSession, request: UserCreate) -> User:
    if await session.scalar(select(User.id).where(User.email == request.email)) is not None:
        raise _taken(request.email)
    user = User(
        email=request.email,
        password_hash=await hash_password(request.password),
        role=request.role.value,
    )
    session.add(user)
    await _flush_unique(session, request.email)
    return user


async def get_user(session: AsyncSession, user_id: uuid.UUID) -> User:
    user = await session.get(User, user_id)
    if user is None:
        raise NotFoundError(f"No user with id {user_id}.", param="user_id", code="user_not_found")
    return user


async def list_users(session: AsyncSession, limit: int, after: uuid.UUID | None) -> UserList:
    rows, fields = await page_of(session, select(User), User.id, limit, after)
    return UserList(data=[UserOut.model_validate(row) for row in rows], **fields)


async def update_user(session: AsyncSession, user: User, changes: UserUpdate) -> User:
    if changes.email is not None and changes.email != user.email:
        if await session.scalar(select(User.id).where(User.email == changes.email)) is not None:
            raise _taken(changes.email)
        user.email = changes.email
    if changes.password is not None:
        user.password_hash = await hash_password(changes.password)
    if changes.role is not None and changes.role.value != user.role:
        user.role = changes.role.value
        await record_key_change(session)  # cached keys carry their owner's role
    if changes.active is not None and changes.active != user.active:
        user.active = changes.active
        await record_key_change(session)
    await _flush_unique(session, user.email)
    return user
