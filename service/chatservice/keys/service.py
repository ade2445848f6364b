"""Issue and authenticate API keys; lookups go through a small in-process TTL cache."""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
import uuid
from collections import OrderedDict
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from chatservice.keys.tables import ApiKey

KEY_PREFIX = "sk-"
DISPLAY_PREFIX_LENGTH = 10


@dataclass(frozen=True, slots=True)
class Principal:
    """Who a request is from: a stored key, or the bootstrap admin key from the settings."""

    key_id: uuid.UUID | None
    name: str
    is_admin: bool
    user_id: uuid.UUID | None = None
    expires_at: datetime | None = None


BOOTSTRAP_ADMIN = Principal(key_id=None, name="bootstrap-admin", is_admin=True)


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def generate_key() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(32)


async def create_key(
    session: AsyncSession,
    *,
    name: str,
    is_admin: bool = False,
    user_id: uuid.UUID | None = None,
    expires_at: datetime | None = None,
) -> tuple[str, ApiKey]:
    """Store a new key and return its plaintext, which exists only in this return value."""
    plaintext = generate_key()
    row = ApiKey(
        name=name,
        key_hash=hash_key(plaintext),
        display_prefix=plaintext[:DISPLAY_PREFIX_LENGTH],
        is_admin=is_admin,
        user_id=user_id,
        expires_at=expires_at,
    )
    session.add(row)
    await session.flush()
    return plaintext, row


class KeyCache:
    """A bounded LRU of key hash → principal (or None for unknown keys), each entry with a TTL.

    Unknown keys are cached too, so a client retrying with a wrong key does not reach the
    database on every request; a revoked key stops working within one TTL.
    """

    def __init__(self, ttl: float, max_size: int) -> None:
        self._ttl = ttl
        self._max_size = max_size
        self._entries: OrderedDict[str, tuple[float, Principal | None]] = OrderedDict()

    def get(self, key_hash: str) -> tuple[bool, Principal | None]:
        entry = self._entries.get(key_hash)
        if entry is None or entry[0] < time.monotonic():
            return False, None
        self._entries.move_to_end(key_hash)
        return True, entry[1]

    def put(self, key_hash: str, principal: Principal | None) -> None:
        if self._ttl <= 0:
            return
        self._entries[key_hash] = (time.monotonic() + self._ttl, principal)
        self._entries.move_to_end(key_hash)
        while len(self._entries) > self._max_size:
            self._entries.popitem(last=False)


class KeyAuthenticator:
    """Checks presented keys: the bootstrap admin key, then the cache, then the database.

    It reads through a session of its own, opened only on a cache miss, so that requests
    whose key is cached never touch the database or even create a session.
    """

    def __init__(self, admin_key: str, cache: KeyCache) -> None:
        self._admin_hash = hash_key(admin_key)
        self._cache = cache

    async def authenticate(
        self, presented: str, sessionmaker: async_sessionmaker[AsyncSession]
    ) -> Principal | None:
        presented_hash = hash_key(presented)
        if hmac.compare_digest(presented_hash, self._admin_hash):
            return BOOTSTRAP_ADMIN
        hit, principal = self._cache.get(presented_hash)
        if not hit:
            async with sessionmaker() as session:
                principal = await _load(session, presented_hash)
            self._cache.put(presented_hash, principal)
        if principal is not None and principal.expires_at is not None:
            if principal.expires_at <= datetime.now(UTC):
                return None
        return principal


async def _load(session: AsyncSession, key_hash: str) -> Principal | None:
    row = await session.scalar(
        select(ApiKey).where(ApiKey.key_hash == key_hash, ApiKey.revoked_at.is_(None))
    )
    if row is None:
        return None
    expires_at = row.expires_at
    if expires_at is not None and expires_at.tzinfo is None:  # SQLite drops the zone
        expires_at = expires_at.replace(tzinfo=UTC)
    return Principal(
        key_id=row.id,
        name=row.name,
        is_admin=row.is_admin,
        user_id=row.user_id,
        expires_at=expires_at,
    )
