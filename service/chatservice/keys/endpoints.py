"""`/keys`: members manage their own keys, admins every key."""

from __future__ import annotations

import uuid

from fastapi import APIRouter, Body

from chatservice.config import API_PREFIX
from chatservice.keys import management
from chatservice.keys.schemas import KeyCreate, KeyCreated, KeyList, KeyOut, KeyRotate, KeyUpdate
from chatservice.kit.api_docs import MANAGEMENT, MANAGEMENT_ERRORS, error_responses
from chatservice.kit.deps import CurrentPrincipal, RuntimeDep, SessionDep
from chatservice.kit.pagination import After, Limit

router = APIRouter(prefix=f"{API_PREFIX}/keys", tags=["keys"])


@router.post(
    "", status_code=201, response_model=KeyCreated, summary="Create a key (secret shown once)",
    responses=error_responses(400, *MANAGEMENT_ERRORS, 404), openapi_extra=MANAGEMENT,
)  # fmt: skip
async def create_key(
    request: KeyCreate, principal: CurrentPrincipal, session: SessionDep
) -> KeyCreated:
    return await management.issue_key(session, principal, request)


@router.get(
    "", response_model=KeyList, summary="List keys (display prefixes only)",
    responses=error_responses(400, *MANAGEMENT_ERRORS), openapi_extra=MANAGEMENT,
)  # fmt: skip
async def list_keys(
    principal: CurrentPrincipal,
    session: SessionDep,
    limit: Limit = 20,
    after: After = None,
    user_id: uuid.UUID | None = None,
) -> KeyList:
    return await management.list_keys(session, principal, limit, after, user_id)


@router.get(
    "/{key_id}", response_model=KeyOut, summary="Describe one key",
    responses=error_responses(400, *MANAGEMENT_ERRORS, 404), openapi_extra=MANAGEMENT,
)  # fmt: skip
async def get_key(key_id: uuid.UUID, principal: CurrentPrincipal, session: SessionDep) -> KeyOut:
    return management.key_out(await management.get_managed_key(session, principal, key_id))


@router.patch(
    "/{key_id}", response_model=KeyOut, summary="Change a key's name, models, expiry or metadata",
    responses=error_responses(400, *MANAGEMENT_ERRORS, 404), openapi_extra=MANAGEMENT,
)  # fmt: skip
async def update_key(
    key_id: uuid.UUID, changes: KeyUpdate, principal: CurrentPrincipal, session: SessionDep
) -> KeyOut:
    row = await management.get_managed_key(session, principal, key_id)
    return management.key_out(await management.update_key(session, row, changes))


@router.delete(
    "/{key_id}", response_model=KeyOut, summary="Revoke a key (every replica within 2 s)",
    responses=error_responses(400, *MANAGEMENT_ERRORS, 404), openapi_extra=MANAGEMENT,
)  # fmt: skip
async def revoke_key(key_id: uuid.UUID, principal: CurrentPrincipal, session: SessionDep) -> KeyOut:
    row = await management.get_managed_key(session, principal, key_id)
    return management.key_out(await management.revoke_key(session, row))


@router.post(
    "/{key_id}/rotate", response_model=KeyCreated,
    summary="Give a key a new secret; the old one works for a grace period",
    responses=error_responses(400, *MANAGEMENT_ERRORS, 404, 409), openapi_extra=MANAGEMENT,
)  # fmt: skip
async def rotate_key(
    key_id: uuid.UUID,
    principal: CurrentPrincipal,
    session: SessionDep,
    runtime: RuntimeDep,
    request: KeyRotate | None = Body(default=None),  # noqa: B008 - FastAPI's declaration
) -> KeyCreated:
    row = await management.get_managed_key(session, principal, key_id)
    grace = runtime.settings.key_rotation_grace
    if request is not None and request.grace_seconds is not None:
        grace = request.grace_seconds
    return await management.rotate_key(session, row, grace)
