"""The per-request session: committed when the route succeeds, rolled back when it fails."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from fastapi import FastAPI
from sqlalchemy import func, select

from chatservice.db.migrate import upgrade
from chatservice.errors import InvalidRequestError
from chatservice.kit.deps import SessionDep
from chatservice.main import create_app
from chatservice.users.tables import User
from tests.service.harness import make_settings, serve


def app_with_writing_routes(database_url: str) -> FastAPI:
    app = create_app(make_settings(database_url))

    async def add_user(email: str, fail: bool, session: SessionDep) -> dict[str, int]:
        session.add(User(email=email))
        await session.flush()  # services flush; only the dependency commits
        if fail:
            raise InvalidRequestError("refused after writing", param="fail")
        return {"users": await session.scalar(select(func.count()).select_from(User)) or 0}

    async def count_users(session: SessionDep) -> dict[str, int]:
        return {"users": await session.scalar(select(func.count()).select_from(User)) or 0}

    app.add_api_route("/test/users", add_user, methods=["POST"])
    app.add_api_route("/test/users", count_users, methods=["GET"])
    return app


async def test_success_commits_and_failure_rolls_back(
    create_database: Callable[[], str],
) -> None:
    url = create_database()
    await asyncio.to_thread(upgrade, url)
    async with serve(app_with_writing_routes(url)) as http:
        kept = await http.post("/test/users", params={"email": "a@example.com", "fail": False})
        assert kept.json() == {"users": 1}
        refused = await http.post("/test/users", params={"email": "b@example.com", "fail": True})
        assert refused.status_code == 400
        assert refused.json()["error"]["param"] == "fail"
        assert (await http.get("/test/users")).json() == {"users": 1}


async def test_sqlite_session_commits_too(sqlite_url: str) -> None:
    async with serve(app_with_writing_routes(sqlite_url)) as http:
        await http.post("/test/users", params={"email": "a@example.com", "fail": False})
        await http.post("/test/users", params={"email": "b@example.com", "fail": True})
        assert (await http.get("/test/users")).json() == {"users": 1}
