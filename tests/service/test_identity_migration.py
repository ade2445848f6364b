"""The identity migration upgrades and downgrades on PostgreSQL and SQLite, keeping admins."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

import pytest
from alembic import command
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from chatservice.db.migrate import alembic_config, upgrade
from tests.service.test_migrate import schema_of

BEFORE = "8b3d5e6f2a41"
IDENTITY = "c7e2a9d4b613"
ADMIN_ID = "11111111-1111-1111-1111-111111111111"
MEMBER_ID = "22222222-2222-2222-2222-222222222222"


async def _run(url: str, statement: str, **values: object) -> list[tuple[object, ...]]:
    engine = create_async_engine(url)
    async with engine.begin() as connection:
        result = await connection.execute(text(statement), values)
        rows = [tuple(r) for r in result] if result.returns_rows else []
    await engine.dispose()
    return rows


@pytest.fixture(params=["postgresql", "sqlite"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "postgresql":
        create_database: Callable[[], str] = request.getfixturevalue("create_database")
        return create_database()
    return f"sqlite+aiosqlite:///{tmp_path / 'identity.db'}"


def test_upgrade_keeps_admins_and_downgrade_restores_the_old_shape(url: str) -> None:
    upgrade(url, BEFORE)
    sqlite = url.startswith("sqlite")
    ids = (
        (ADMIN_ID.replace("-", ""), MEMBER_ID.replace("-", "")) if sqlite else (ADMIN_ID, MEMBER_ID)
    )
    asyncio.run(
        _run(
            url,
            "INSERT INTO users (id, email, is_admin, created_at) VALUES "
            "(:admin, 'ops@example.com', TRUE, CURRENT_TIMESTAMP), "
            "(:member, 'dev@example.com', FALSE, CURRENT_TIMESTAMP)",
            admin=ids[0],
            member=ids[1],
        )
    )
    upgrade(url, IDENTITY)
    versions, tables = asyncio.run(schema_of(url))
    assert versions == [IDENTITY]
    assert {"teams", "memberships", "auth_invalidations"} <= tables
    roles = asyncio.run(_run(url, "SELECT email, role, active FROM users ORDER BY email"))
    assert [(r[0], r[1], bool(r[2])) for r in roles] == [
        ("dev@example.com", "member", True),
        ("ops@example.com", "admin", True),
    ]

    command.downgrade(alembic_config(url), BEFORE)
    versions, tables = asyncio.run(schema_of(url))
    assert versions == [BEFORE]
    assert not {"teams", "memberships", "auth_invalidations"} & tables
    admins = asyncio.run(_run(url, "SELECT email, is_admin FROM users ORDER BY email"))
    assert [(r[0], bool(r[1])) for r in admins] == [
        ("dev@example.com", False),
        ("ops@example.com", True),
    ]
    upgrade(url, IDENTITY)  # and up again
    assert asyncio.run(schema_of(url))[0] == [IDENTITY]
