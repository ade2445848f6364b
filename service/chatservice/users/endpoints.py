"""`/users`: admins manage everyone; a member sees and changes only themselves."""

from __future__ import annotations

import uuid

from fastapi import APIRouter

from chatservice.config import API_PREFIX
from chatservice.errors import NotFoundError, PermissionDeniedError
from chatservice.keys.service import Principal
from chatservice.kit.api_docs import MANAGEMENT, MANAGEMENT_ERRORS, error_responses
from chatservice.kit.deps import AdminPrincipal, CurrentPrincipal, CurrentUser, SessionDep
from chatservice.kit.pagination import After, Limit
from chatservice.users import service
from chatservice.users.schemas import UserCreate, UserList, UserOut, UserUpdate
from chatservice.users.tables import User

router = APIRouter(prefix=f"{API_PREFIX}/users", tags=["users"])


def _own_or_admin(principal: Principal, user_id: uuid.UUID) -> None:
    if not principal.is_admin and principal.user_id != user_id:
        # As if it did not exist: members learn nothing about other users.
        raise NotFoundError(f"No user with id {user_id}.", param="user_id", code="user_not_found")


@router.post(
    "", status_code=201, response_model=UserOut, summary="Create a user (admins)",
    responses=error_responses(400, *MANAGEMENT_ERRORS, 409), openapi_extra=MANAGEMENT,
)  # fmt: skip
async def create_user(request: UserCreate, admin: AdminPrincipal, session: SessionDep) -> User:
    return await service.create_user(session, request)


@router.get(
    "", response_model=UserList, summary="List users (admins)",
    responses=error_responses(400, *MANAGEMENT_ERRORS), openapi_extra=MANAGEMENT,
)  # fmt: skip
async def list_users(
    admin: AdminPrincipal, session: SessionDep, limit: Limit = 20, after: After = None
) -> UserList:
    return await service.list_users(session, limit, after)


@router.get(
    "/me", response_model=UserOut, summary="The user behind this key or login",
    responses=error_responses(*MANAGEMENT_ERRORS), openapi_extra=MANAGEMENT,
)  # fmt: skip
async def get_me(user: CurrentUser) -> User:
    return user


@router.get(
    "/{user_id}", response_model=UserOut, summary="Describe one user",
    responses=error_responses(400, *MANAGEMENT_ERRORS, 404), openapi_extra=MANAGEMENT,
)  # fmt: skip
async def get_user(user_id: uuid.UUID, principal: CurrentPrincipal, session: SessionDep) -> User:
    _own_or_admin(principal, user_id)
    return await service.get_user(session, user_id)


@router.patch(
    "/{user_id}", response_model=UserOut, summary="Change a user",
    responses=error_responses(400, *MANAGEMENT_ERRORS, 404, 409), openapi_extra=MANAGEMENT,
)  # fmt: skip
async def update_user(
    user_id: uuid.UUID, changes: UserUpdate, principal: CurrentPrincipal, session: SessionDep
) -> User:
    _own_or_admin(principal, user_id)
    if not principal.is_admin and (changes.role is not None or changes.active is not None):
        raise PermissionDeniedError("Only admins change roles and deactivate users.", param="role")
    return await service.update_user(session, await service.get_user(session, user_id), changes)


@router.delete(
    "/{user_id}", response_model=UserOut, summary="Deactivate a user: their keys and logins stop",
    responses=error_responses(400, *MANAGEMENT_ERRORS, 404), openapi_extra=MANAGEMENT,
)  # fmt: skip
async def deactivate_user(user_id: uuid.UUID, admin: AdminPrincipal, session: SessionDep) -> User:
    user = await service.get_user(session, user_id)
    return await service.update_user(session, user, UserUpdate(active=False))
