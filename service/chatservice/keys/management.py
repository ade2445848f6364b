"""The keys API's work: who may see which key, and each change with its invalidation."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from chatservice.db.clock import utc_now
from chatservice.errors import ConflictError, NotFoundError, PermissionDeniedError
from chatservice.keys.invalidation import record_key_change
from chatservice.keys.schemas import KeyCreate, KeyCreated, KeyList, KeyOut, KeyUpdate
from chatservice.keys.service import (
    DISPLAY_PREFIX_LENGTH,
    Principal,
    create_key,
    generate_key,
    hash_key,
)
from chatservice.keys.tables import ApiKey
from chatservice.kit.pagination import page_of
from chatservice.teams.tables import Membership, Team
from chatservice.users.tables import User


def key_out(row: ApiKey) -> KeyOut:
    return KeyOut.model_validate(_fields(row))


def _fields(row: ApiKey) -> dict[str, Any]:
    return {
        "id": row.id, "name": row.name, "display_prefix": row.display_prefix,
        "user_id": row.user_id, "team_id": row.team_id, "allowed_models": row.allowed_models,
        "metadata": row.key_metadata, "created_at": row.created_at, "updated_at": row.updated_at,
        "expires_at": row.expires_at, "revoked_at": row.revoked_at,
        "previous_key_expires_at": row.previous_key_expires_at,
    }  # fmt: skip


def _not_found(key_id: uuid.UUID) -> NotFoundError:
    return NotFoundError(f"No API key with id {key_id}.", param="key_id", code="key_not_found")


def _visible(principal: Principal) -> Any:
    """The filter of the keys `principal` manages: all for admins, else their own."""
    if principal.is_admin:
        return ApiKey.id.is_not(None)
    if principal.user_id is None:
        return ApiKey.id.is_(None)
    return ApiKey.user_id == principal.user_id


async def get_managed_key(session: AsyncSession, principal: Principal, key_id: uuid.UUID) -> ApiKey:
    """The key, if `principal` may manage it; otherwise 404, so as not to reveal it exists."""
    row = await session.scalar(select(ApiKey).where(ApiKey.id == key_id, _visible(principal)))
    if row is None:
        raise _not_found(key_id)
    return row


async def issue_key(session: AsyncSession, principal: Principal, request: KeyCreate) -> KeyCreated:
    owner = request.user_id if request.user_id is not None else principal.user_id
    if not principal.is_admin and (owner is None or owner != principal.user_id):
        raise PermissionDeniedError("Members may only create keys for themselves.", param="user_id")
    if owner is not None and await session.get(User, owner) is None:
        raise NotFoundError(f"No user with id {owner}.", param="user_id", code="user_not_found")
    if request.team_id is not None:
        await _check_team(session, principal, request.team_id)
    plaintext, row = await create_key(
        session,
        name=request.name,
        user_id=owner,
        team_id=request.team_id,
        allowed_models=request.allowed_models,
        expires_at=request.expires_at,
        metadata=request.metadata,
    )
    return KeyCreated(**_fields(row), key=plaintext)


async def _check_team(session: AsyncSession, principal: Principal, team_id: uuid.UUID) -> None:
    missing = NotFoundError(f"No team with id {team_id}.", param="team_id", code="team_not_found")
    if await session.get(Team, team_id) is None:
        raise missing
    if (
        not principal.is_admin
        and await session.get(Membership, (team_id, principal.user_id)) is None
    ):
        raise missing


async def list_keys(
    session: AsyncSession,
    principal: Principal,
    limit: int,
    after: uuid.UUID | None,
    user_id: uuid.UUID | None,
) -> KeyList:
    statement = select(ApiKey).where(_visible(principal))
    if user_id is not None:
        statement = statement.where(ApiKey.user_id == user_id)
    rows, fields = await page_of(session, statement, ApiKey.id, limit, after)
    return KeyList(data=[key_out(row) for row in rows], **fields)


async def update_key(session: AsyncSession, row: ApiKey, changes: KeyUpdate) -> ApiKey:
    given = changes.model_fields_set
    if "name" in given and changes.name is not None:
        row.name = changes.name
    if "allowed_models" in given:
        row.allowed_models = changes.allowed_models
    if "expires_at" in given:
        row.expires_at = changes.expires_at
    if "metadata" in given:
        row.key_metadata = changes.metadata
    row.updated_at = utc_now()
    await record_key_change(session)
    return row


async def revoke_key(session: AsyncSession, row: ApiKey) -> ApiKey:
    if row.revoked_at is None:
        row.revoked_at = utc_now()
        await record_key_change(session)
    return row


async def rotate_key(session: AsyncSession, row: ApiKey, grace_seconds: float) -> KeyCreated:
    if row.revoked_at is not None:
        raise ConflictError("A revoked key cannot be rotated.", param="key_id", code="key_revoked")
    plaintext = generate_key()
    row.previous_key_hash = row.key_hash if grace_seconds > 0 else None
    row.previous_key_expires_at = (
        utc_now() + timedelta(seconds=grace_seconds) if grace_seconds > 0 else None
    )
    row.key_hash = hash_key(plaintext)
    row.display_prefix = plaintext[:DISPLAY_PREFIX_LENGTH]
    row.updated_at = utc_now()
    await session.flush()
    await record_key_change(session)  # cached entries of the old secret carry no grace end
    return KeyCreated(**_fields(row), key=plaintext)
