"""API keys: bearer auth, stored keys, revocation, expiry and the lookup cache."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from chatservice.keys.service import KeyCache, create_key, hash_key
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

    row = (await pg_connection.execute(select(ApiKey.key_hash, ApiKey.display_prefix))).one()
    assert row.key_hash == hash_key(key)
    assert key not in row.key_hash
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
    cache = KeyCache(ttl=30, max_size=2)
    cache.put("a", None)
    cache.put("b", None)
    cache.put("c", None)
    assert cache.get("a") == (False, None)
    assert cache.get("c") == (True, None)
    assert KeyCache(ttl=0, max_size=2).get("a") == (False, None)
