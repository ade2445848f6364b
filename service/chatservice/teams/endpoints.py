"""`/teams` and `/teams/{id}/members`: admins manage them; members see their own teams."""

from __future__ import annotations

import uuid

from fastapi import APIRouter, Response

from chatservice.config import API_PREFIX
from chatservice.kit.api_docs import MANAGEMENT, MANAGEMENT_ERRORS, error_responses
from chatservice.kit.deps import AdminPrincipal, CurrentPrincipal, SessionDep
from chatservice.kit.pagination import After, Limit
from chatservice.teams import service
from chatservice.teams.schemas import (
    MemberAdd,
    MemberList,
    MemberOut,
    TeamCreate,
    TeamList,
    TeamOut,
)
from chatservice.teams.tables import Team

router = APIRouter(prefix=f"{API_PREFIX}/teams", tags=["teams"])
_ONE = error_responses(400, *MANAGEMENT_ERRORS, 404)


@router.post(
    "", status_code=201, response_model=TeamOut, summary="Create a team (admins)",
    responses=error_responses(400, *MANAGEMENT_ERRORS, 409), openapi_extra=MANAGEMENT,
)  # fmt: skip
async def create_team(request: TeamCreate, admin: AdminPrincipal, session: SessionDep) -> Team:
    return await service.create_team(session, request.name)


@router.get(
    "", response_model=TeamList, summary="List teams (members: their own)",
    responses=error_responses(400, *MANAGEMENT_ERRORS), openapi_extra=MANAGEMENT,
)  # fmt: skip
async def list_teams(
    principal: CurrentPrincipal, session: SessionDep, limit: Limit = 20, after: After = None
) -> TeamList:
    return await service.list_teams(session, principal, limit, after)


@router.get(
    "/{team_id}", response_model=TeamOut, summary="Describe one team",
    responses=_ONE, openapi_extra=MANAGEMENT,
)  # fmt: skip
async def get_team(team_id: uuid.UUID, principal: CurrentPrincipal, session: SessionDep) -> Team:
    return await service.get_team(session, principal, team_id)


@router.patch(
    "/{team_id}", response_model=TeamOut, summary="Rename a team (admins)",
    responses=error_responses(400, *MANAGEMENT_ERRORS, 404, 409), openapi_extra=MANAGEMENT,
)  # fmt: skip
async def rename_team(
    team_id: uuid.UUID, request: TeamCreate, admin: AdminPrincipal, session: SessionDep
) -> Team:
    team = await service.get_team(session, admin, team_id)
    return await service.rename_team(session, team, request.name)


@router.delete(
    "/{team_id}", status_code=204, response_class=Response, summary="Delete a team (admins)",
    responses=_ONE, openapi_extra=MANAGEMENT,
)  # fmt: skip
async def delete_team(team_id: uuid.UUID, admin: AdminPrincipal, session: SessionDep) -> None:
    await service.delete_team(session, await service.get_team(session, admin, team_id))


@router.get(
    "/{team_id}/members", response_model=MemberList, summary="List a team's members",
    responses=_ONE, openapi_extra=MANAGEMENT,
)  # fmt: skip
async def list_members(
    team_id: uuid.UUID,
    principal: CurrentPrincipal,
    session: SessionDep,
    limit: Limit = 20,
    after: After = None,
) -> MemberList:
    team = await service.get_team(session, principal, team_id)
    return await service.list_members(session, team, limit, after)


@router.post(
    "/{team_id}/members", status_code=201, response_model=MemberOut,
    summary="Add a member (admins)",
    responses=error_responses(400, *MANAGEMENT_ERRORS, 404, 409), openapi_extra=MANAGEMENT,
)  # fmt: skip
async def add_member(
    team_id: uuid.UUID, request: MemberAdd, admin: AdminPrincipal, session: SessionDep
) -> MemberOut:
    team = await service.get_team(session, admin, team_id)
    return await service.add_member(session, team, request.user_id)


@router.delete(
    "/{team_id}/members/{user_id}", status_code=204, response_class=Response,
    summary="Remove a member (admins)", responses=_ONE, openapi_extra=MANAGEMENT,
)  # fmt: skip
async def remove_member(
    team_id: uuid.UUID, user_id: uuid.UUID, admin: AdminPrincipal, session: SessionDep
) -> None:
    await service.remove_member(session, await service.get_team(session, admin, team_id), user_id)
