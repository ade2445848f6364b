"""`chatservice migrate`: the console script, on PostgreSQL and SQLite."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from sqlalchemy import inspect, text
from sqlalchemy.ext.asyncio import create_async_engine

from chatservice.db.migrate import script_directory

MIGRATE = [sys.executable, "-m", "chatservice.cli", "migrate"]


def migrate_env(url: str) -> dict[str, str]:
    return {**os.environ, "CHATSERVICE_DATABASE_URL": url}


async def schema_of(url: str) -> tuple[list[str], set[str]]:
    engine = create_async_engine(url)
    async with engine.connect() as connection:
        versions = [
            r[0] for r in await connection.execute(text("SELECT version_num FROM alembic_version"))
        ]
        tables = set(await connection.run_sync(lambda c: inspect(c).get_table_names()))
    await engine.dispose()
    return versions, tables


async def test_two_concurrent_migrators_both_succeed_and_apply_once(
    create_database: Callable[[], str],
) -> None:
    url = create_database()
    runs = [
        await asyncio.create_subprocess_exec(
            *MIGRATE, env=migrate_env(url), stderr=subprocess.PIPE, stdout=subprocess.PIPE
        )
        for _ in range(2)
    ]
    results = await asyncio.gather(*(run.communicate() for run in runs))
    for run, (_, stderr) in zip(runs, results, strict=True):
        assert run.returncode == 0, stderr.decode()

    versions, tables = await schema_of(url)
    assert versions == [script_directory().get_current_head()]
    assert {"users", "api_keys", "alembic_version"} <= tables


def test_migrate_builds_the_embedded_sqlite_database(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'fresh.db'}"
    subprocess.run(MIGRATE, env=migrate_env(url), check=True, capture_output=True)
    subprocess.run(MIGRATE, env=migrate_env(url), check=True, capture_output=True)  # idempotent
    versions, tables = asyncio.run(schema_of(url))
    assert versions == [script_directory().get_current_head()]
    assert {"users", "api_keys"} <= tables


def test_migrate_fails_loudly_when_the_database_is_unreachable(tmp_path: Path) -> None:
    url = "postgresql+asyncpg://postgres@127.0.0.1:1/none"
    result = subprocess.run(MIGRATE, env=migrate_env(url), capture_output=True, check=False)
    assert result.returncode != 0
