"""Request dependencies as `Annotated` aliases, so routes declare what they need by type."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy.ext.asyncio import AsyncSession

from chatservice.auth import tokens
from chatservice.auth.tokens import looks_like_jwt
from chatservice.errors import AuthenticationError, PermissionDeniedError
from chatservice.keys.invalidation import changed_keys
from chatservice.keys.service import Principal
from chatservice.observability.context import current_record
from chatservice.runtime import Runtime
from chatservice.users.tables import User


def runtime_of(request: Request) -> Runtime:
    runtime: Runtime = request.app.state.runtime
    return runtime


async def get_runtime(request: Request) -> Runtime:
    # async, like every dependency here: FastAPI runs plain `def` ones in a thread pool,
    # a hand-off that costs more than the whole lookup.
    return runtime_of(request)


RuntimeDep = Annotated[Runtime, Depends(get_runtime)]


async def get_session(runtime: RuntimeDep) -> AsyncIterator[AsyncSession]:
    """One session per request: committed when the route succeeds, rolled back when it fails.

    Services only flush; this is the one place that commits.
    """
    async with runtime.sessionmaker() as session:
        try:
            yield session
        except BaseException:
            await session.rollback()
            raise
        else:
            await session.commit()
            if changed_keys(session):
                # This worker's cache goes now; the others' at their next poll.
                runtime.authenticator.invalidate()


SessionDep = Annotated[AsyncSession, Depends(get_session)]


def _bearer(request: Request) -> str:
    header = request.headers.get("authorization", "")
    scheme, _, presented = header.partition(" ")
    if scheme.lower() != "bearer" or not presented.strip():
        raise AuthenticationError(
            "You didn't provide an API key. Send it as `Authorization: Bearer <key>`.",
            code="missing_api_key",
        )
    return presented.strip()


async def _key_principal(request: Request, runtime: Runtime, presented: str) -> Principal:
    client = request.client.host if request.client is not None else None
    principal = await runtime.authenticator.authenticate(presented, runtime.sessionmaker, client)
    if principal is None:
        raise AuthenticationError("Incorrect API key provided.")
    _log_principal(principal)
    return principal


def _log_principal(principal: Principal) -> None:
    record = current_record()
    if record is not None:
        record.key_id = principal.name if principal.key_id is None else str(principal.key_id)


async def get_current_key(request: Request) -> Principal:
    # Not `runtime: RuntimeDep`: FastAPI solves each declared dependency on every request
    # (about 20 µs each), and every chat completion passes through this one.
    return await _key_principal(request, runtime_of(request), _bearer(request))


CurrentKey = Annotated[Principal, Depends(get_current_key)]


async def get_current_principal(request: Request, session: SessionDep) -> Principal:
    """A key (with its owner's rights) or a login token: who calls the management API."""
    runtime = runtime_of(request)
    presented = _bearer(request)
    if not looks_like_jwt(presented):
        return await _key_principal(request, runtime, presented)
    secret = runtime.settings.jwt_secret
    invalid = AuthenticationError("Invalid or expired login token.", code="invalid_token")
    if secret is None:
        raise invalid
    try:
        claims = tokens.verify(presented, secret.get_secret_value(), runtime.settings.jwt_leeway)
    except tokens.InvalidTokenError:
        raise invalid from None
    user = await session.get(User, claims.user_id)
    if user is None or not user.active:  # deactivating a user ends their logins at once
        raise invalid
    principal = Principal(
        key_id=None,
        name=f"user-{user.id}",
        is_admin=user.is_admin,
        user_id=user.id,
        expires_at=datetime.fromtimestamp(claims.expires_at, UTC),
    )
    _log_principal(principal)
    return principal


CurrentPrincipal = Annotated[Principal, Depends(get_current_principal)]


async def get_admin_principal(principal: CurrentPrincipal) -> Principal:
    if not principal.is_admin:
        raise PermissionDeniedError("This needs an admin's key or login.")
    return principal


AdminPrincipal = Annotated[Principal, Depends(get_admin_principal)]


async def get_current_user(principal: CurrentPrincipal, session: SessionDep) -> User:
    """The user behind the key or token; the bootstrap admin key has none."""
    user = await session.get(User, principal.user_id) if principal.user_id is not None else None
    if user is None or not user.active:
        raise PermissionDeniedError("This key belongs to no user.", code="no_user")
    return user


CurrentUser = Annotated[User, Depends(get_current_user)]
