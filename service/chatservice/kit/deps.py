"""Request dependencies as `Annotated` aliases, so routes declare what they need by type."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy.ext.asyncio import AsyncSession

from chatservice.errors import AuthenticationError
from chatservice.keys.service import Principal
from chatservice.observability.context import current_record
from chatservice.runtime import Runtime


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


SessionDep = Annotated[AsyncSession, Depends(get_session)]


async def get_current_key(request: Request) -> Principal:
    # Not `runtime: RuntimeDep`: FastAPI solves each declared dependency on every request
    # (about 20 µs each), and every chat completion passes through this one.
    runtime = runtime_of(request)
    header = request.headers.get("authorization", "")
    scheme, _, presented = header.partition(" ")
    if scheme.lower() != "bearer" or not presented.strip():
        raise AuthenticationError(
            "You didn't provide an API key. Send it as `Authorization: Bearer <key>`.",
            code="missing_api_key",
        )
    client = request.client.host if request.client is not None else None
    principal = await runtime.authenticator.authenticate(
        presented.strip(), runtime.sessionmaker, client
    )
    if principal is None:
        raise AuthenticationError("Incorrect API key provided.")
    record = current_record()
    if record is not None:
        record.key_id = principal.name if principal.key_id is None else str(principal.key_id)
    return principal


CurrentKey = Annotated[Principal, Depends(get_current_key)]
