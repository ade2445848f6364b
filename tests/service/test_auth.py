"""API keys: bearer auth, stored keys, revocation, expiry and the lookup cache."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from sqlalchemy import event, select, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from chatservice.keys.service import KeyCache, Principal, create_key, hash_key
from chatservice.keys.tables import ApiKey

MODELS = "/api/v1/models"


async def store_key(connection: AsyncConnection, **kwargs: object) -> str:
    async with AsyncSession(bind=connection, join_transaction_mode="create_savepoint") as session:
        plaintext, _ = await create_key(session, name="test", **kwargs)  # type: ignore[arg-type]
        await session.commit()
    return plaintext


async def test_missing_and_wrong_keys_are_401(client: httpx.AsyncClient) -> None:
    missing = await client.get(MODELS)
    assert missing.status_code == 401
    assert missing.json()["error"]["code"] == "missing_api_key"
    wrong = await client.get(MODELS, headers={"Authorization": "Bearer sk-not-a-real-key"})
    assert wrong.status_code == 401
    assert wrong.json()["error"]["code"] == "invalid_api_key"
    assert "sk-not-a-real-key" not in wrong.text
    basic = await client.get(MODELS, headers={"Authorization": "Basic dXNlcjpwYXNz"})
    assert basic.status_code == 401


async def test_stored_key_works_and_is_kept_only_as_a_hash(
    client: httpx.AsyncClient, pg_connection: AsyncConnection
) -> None:
    key = await store_key(pg_connection)
    assert key.startswith("sk-")
    assert len(key) > 40
    response = await client.get(MODELS, headers={"Authorization": f"Bearer {key}"})
    assert response.status_code == 200

    # The shared database may hold keys other tests committed: this key's row is the one
    # whose display prefix it starts with.
    rows = (await pg_connection.execute(select(ApiKey.key_hash, ApiKey.display_prefix))).all()
    [row] = [r for r in rows if key.startswith(r.display_prefix)]
    assert row.key_hash == hash_key(key)
    assert all(key not in r.key_hash for r in rows)
    assert key.startswith(row.display_prefix)
    assert len(row.display_prefix) < len(key) // 3


async def test_revoked_key_stops_working_within_the_cache_ttl(
    open_client: Callable[..., Any], pg_connection: AsyncConnection
) -> None:
    key = await store_key(pg_connection)
    headers = {"Authorization": f"Bearer {key}"}
    async with open_client(key_cache_ttl=30) as cached, open_client(key_cache_ttl=0) as uncached:
        assert (await cached.get(MODELS, headers=headers)).status_code == 200
        assert (await uncached.get(MODELS, headers=headers)).status_code == 200

        await pg_connection.execute(update(ApiKey).values(revoked_at=datetime.now(UTC)))
        # Within the TTL the key is served from the cache, without the database.
        assert (await cached.get(MODELS, headers=headers)).status_code == 200
        assert (await uncached.get(MODELS, headers=headers)).status_code == 401


async def test_expired_key_is_refused(
    client: httpx.AsyncClient, pg_connection: AsyncConnection
) -> None:
    key = await store_key(pg_connection, expires_at=datetime.now(UTC) - timedelta(seconds=1))
    response = await client.get(MODELS, headers={"Authorization": f"Bearer {key}"})
    assert response.status_code == 401


def test_cache_is_bounded_and_expires() -> None:
    principal = Principal(key_id=None, name="k", is_admin=False)
    cache = KeyCache(ttl=30, max_size=2, negative_ttl=30, negative_size=2)
    for name in "abc":
        cache.put(name, principal)
    assert cache.get("a") == (False, None)
    assert cache.get("c") == (True, principal)
    for name in "xyz":
        cache.put(name, None)
    assert cache.get("x") == (False, None)
    assert cache.get("z") == (True, None)
    assert KeyCache(ttl=0, max_size=2).get("a") == (False, None)


def test_unknown_keys_cannot_push_known_ones_out() -> None:
    principal = Principal(key_id=None, name="k", is_admin=False)
    cache = KeyCache(ttl=30, max_size=10, negative_ttl=5, negative_size=10)
    cache.put("known", principal)
    for index in range(10_000):
        cache.put(f"random-{index}", None)
    assert cache.get("known") == (True, principal)


async def test_wrong_keys_are_rate_limited_per_client_before_the_database(
    open_client: Callable[..., Any], pg_connection: AsyncConnection
) -> None:
    key = await store_key(pg_connection)
    statements: list[str] = []

    def count(*args: Any) -> None:
        statements.append(args[2])

    event.listen(pg_connection.sync_engine, "before_cursor_execute", count)
    try:
        async with open_client(auth_failures_per_minute=10) as http:
            assert (await http.get(MODELS, headers=_bearer(key))).status_code == 200
            statuses = [
                (await http.get(MODELS, headers=_bearer(f"sk-random-{i}"))).status_code
                for i in range(200)
            ]
            refused = await http.get(MODELS, headers=_bearer("sk-random-again"))
            # A key this worker knows still works from the same address.
            assert (await http.get(MODELS, headers=_bearer(key))).status_code == 200
    finally:
        event.remove(pg_connection.sync_engine, "before_cursor_execute", count)

    assert statuses[:10] == [401] * 10
    assert set(statuses[10:]) == {429}
    assert refused.json()["error"]["code"] == "too_many_authentication_failures"
    assert int(refused.headers["retry-after"]) >= 1
    lookups = [s for s in statements if "api_keys" in s]
    assert len(lookups) <= 11, "only the allowed failures (and the valid key) reached the database"


async def test_a_repeated_wrong_key_is_answered_from_the_cache(
    open_client: Callable[..., Any], pg_connection: AsyncConnection
) -> None:
    statements: list[str] = []

    def count(*args: Any) -> None:
        statements.append(args[2])

    event.listen(pg_connection.sync_engine, "before_cursor_execute", count)
    try:
        async with open_client() as http:
            for _ in range(5):
                response = await http.get(MODELS, headers=_bearer("sk-same-wrong-key"))
                assert response.status_code == 401
    finally:
        event.remove(pg_connection.sync_engine, "before_cursor_execute", count)
    assert len([s for s in statements if "api_keys" in s]) == 1


def _bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}
