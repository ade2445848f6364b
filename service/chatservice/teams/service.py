"""Teams and memberships. Services flush; the request's session commits."""

from __future__ import annotations

import uuid

from sqlalchemy import delete, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from chatservice.errors import ConflictError, NotFoundError
from chatservice.keys.service import Principal
from chatservice.keys.tables import ApiKey
from chatservice.kit.pagination import page_of
from chatservice.teams.schemas import MemberList, MemberOut, TeamList, TeamOut
from chatservice.teams.tables import Membership, Team
from chatservice.users.tables import User


def _taken(name: str) -> ConflictError:
    return ConflictError(f"A team named {name!r} exists.", param="name", code="team_name_taken")


async def create_team(session: AsyncSession, name: str) -> Team:
    if await session.scalar(select(Team.id).where(Team.name == name)) is not None:
        raise _taken(name)
    team = Team(name=name)
    session.add(team)
    try:
        await session.flush()
    except IntegrityError:
        raise _taken(name) from None
    return team


async def get_team(session: AsyncSession, principal: Principal, team_id: uuid.UUID) -> Team:
    """The team, if `principal` is an admin or a member; otherwise 404."""
    team = await session.get(Team, team_id)
    if team is not None and not principal.is_admin:
        if await session.get(Membership, (team_id, principal.user_id)) is None:
            team = None
    if team is None:
        raise NotFoundError(f"No team with id {team_id}.", param="team_id", code="team_not_found")
    return team


async def list_teams(
    session: AsyncSession, principal: Principal, limit: int, after: uuid.UUID | None
) -> TeamList:
    statement = select(Team)
    if not principal.is_admin:
        statement = statement.join(Membership, Membership.team_id == Team.id).where(
            Membership.user_id == principal.user_id
        )
    rows, fields = await page_of(session, statement, Team.id, limit, after)
    return TeamList(data=[TeamOut.model_validate(row) for row in rows], **fields)


async def rename_team(session: AsyncSession, team: Team, name: str) -> Team:
    if name != team.name:
        if await session.scalar(select(Team.id).where(Team.name == name)) is not None:
            raise _taken(name)
        team.name = name
        await session.flush()
    return team


async def delete_team(session: AsyncSession, team: Team) -> None:
    # Explicit rather than by the foreign keys: SQLite enforces them only when asked to.
    await session.execute(update(ApiKey).where(ApiKey.team_id == team.id).values(team_id=None))
    await session.execute(delete(Membership).where(Membership.team_id == team.id))
    await session.delete(team)
    await session.flush()


async def add_member(session: AsyncSession, team: Team, user_id: uuid.UUID) -> MemberOut:
    user = await session.get(User, user_id)
    if user is None:
        raise NotFoundError(f"No user with id {user_id}.", param="user_id", code="user_not_found")
    if await session.get(Membership, (team.id, user_id)) is not None:
        raise ConflictError("The user is already a member.", param="user_id", code="member_exists")
    membership = Membership(team_id=team.id, user_id=user_id)
    session.add(membership)
    await session.flush()
    return MemberOut(
        id=user.id, team_id=team.id, email=user.email, created_at=membership.created_at
    )


async def list_members(
    session: AsyncSession, team: Team, limit: int, after: uuid.UUID | None
) -> MemberList:
    statement = (
        select(User)
        .join(Membership, Membership.user_id == User.id)
        .where(Membership.team_id == team.id)
    )
    rows, fields = await page_of(session, statement, User.id, limit, after)
    joined = {
        m.user_id: m.created_at
        for m in await session.scalars(
            select(Membership).where(
                Membership.team_id == team.id, Membership.user_id.in_([u.id for u in rows])
            )
        )
    }
    data = [
        MemberOut(id=u.id, team_id=team.id, email=u.email, created_at=joined[u.id]) for u in rows
    ]
    return MemberList(data=data, **fields)


async def remove_member(session: AsyncSession, team: Team, user_id: uuid.UUID) -> None:
    membership = await session.get(Membership, (team.id, user_id))
    if membership is None:
        raise NotFoundError("No such member.", param="user_id", code="member_not_found")
    await session.delete(membership)
    await session.flush()
