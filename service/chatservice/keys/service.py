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
from typing import Any

from sqlalchemy import and_, or_, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from chatservice.db.clock import as_utc
from chatservice.db.outage import DATABASE_ERRORS, database_log, within
from chatservice.errors import DatabaseUnavailableError, TooManyAuthenticationFailuresError
from chatservice.keys.failure_limiter import FailureLimiter
from chatservice.keys.tables import ApiKey
from chatservice.users.tables import Role, User

KEY_PREFIX = "sk-"
DISPLAY_PREFIX_LENGTH = 10


@dataclass(frozen=True, slots=True)
class Principal:
    """Who a request is from: a stored key, a login token, or the bootstrap admin key.

    A key acts with its owner's rights (`is_admin` when the owner is an admin, or for keys
    the CLI made with `--admin`).
    """

    key_id: uuid.UUID | None
    name: str
    is_admin: bool
    user_id: uuid.UUID | None = None
    expires_at: datetime | None = None
    team_id: uuid.UUID | None = None
    # None: every model. Otherwise the public model names the key may use.
    allowed_models: frozenset[str] | None = None

    def may_use(self, model: str) -> bool:
        return self.allowed_models is None or model in self.allowed_models


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
    team_id: uuid.UUID | None = None,
    allowed_models: list[str] | None = None,
    metadata: dict[str, Any] | None = None,
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
        team_id=team_id,
        allowed_models=allowed_models,
        key_metadata=metadata,
    )
    session.add(row)
    await session.flush()
    return plaintext, row


class KeyCache:
    """Bounded LRUs of key hash → principal, each entry with a TTL.

    Known keys and unknown ones are kept apart: a flood of random keys evicts only other
    unknown keys. A known key's entry outlives its TTL until the LRU drops it, so that it can
    be served while the database cannot be reached (`stale`); a revoked key still stops
    within one TTL whenever the database answers.
    """

    def __init__(
        self, ttl: float, max_size: int, negative_ttl: float = 0.0, negative_size: int = 1
    ) -> None:
        self._ttl = ttl
        self._max_size = max_size
        self._negative_ttl = negative_ttl
        self._negative_size = negative_size
        self._known: OrderedDict[str, tuple[float, Principal]] = OrderedDict()
        self._unknown: OrderedDict[str, float] = OrderedDict()
        # Moves on every `clear`: a lookup that started before a clear must not put back
        # what it read, which may be the row the clear was about.
        self.generation = 0

    def clear(self) -> None:
        self._known.clear()
        self._unknown.clear()
        self.generation += 1

    def get(self, key_hash: str) -> tuple[bool, Principal | None]:
        now = time.monotonic()
        entry = self._known.get(key_hash)
        if entry is not None and entry[0] >= now:
            self._known.move_to_end(key_hash)
            return True, entry[1]
        expires = self._unknown.get(key_hash)
        if expires is not None and expires >= now:
            return True, None
        return False, None

    def stale(self, key_hash: str) -> Principal | None:
        entry = self._known.get(key_hash)
        return entry[1] if entry is not None else None

    def put(
        self, key_hash: str, principal: Principal | None, generation: int | None = None
    ) -> None:
        if generation is not None and generation != self.generation:
            return
        if principal is None:
            self._known.pop(key_hash, None)
            if self._negative_ttl > 0:
                self._unknown[key_hash] = time.monotonic() + self._negative_ttl
                _keep_newest(self._unknown, key_hash, self._negative_size)
        else:
            self._unknown.pop(key_hash, None)
            if self._ttl > 0:
                self._known[key_hash] = (time.monotonic() + self._ttl, principal)
                _keep_newest(self._known, key_hash, self._max_size)


def _keep_newest(entries: OrderedDict[str, Any], newest: str, size: int) -> None:
    entries.move_to_end(newest)
    while len(entries) > size:
        entries.popitem(last=False)


class KeyAuthenticator:
    """Checks presented keys: the bootstrap admin key, then the cache, then the database.

    It reads through a session of its own, opened only on a cache miss, so that requests
    whose key is cached never touch the database or even create a session. The lookup is
    bounded by `lookup_timeout`; when the database cannot answer, a key it knew recently is
    served from the cache, and any other gets `DatabaseUnavailableError`. Clients that send
    wrong keys too often are refused before their keys are looked up.
    """

    def __init__(
        self,
        admin_key: str,
        cache: KeyCache,
        failures: FailureLimiter,
        *,
        lookup_timeout: float = 5.0,
        retry_after: int = 2,
    ) -> None:
        self._admin_hash = hash_key(admin_key)
        self._cache = cache
        self._failures = failures
        self._lookup_timeout = lookup_timeout
        self._retry_after = retry_after
        # After a failed lookup the database is not asked again for `retry_after` seconds:
        # requests meanwhile get their answer at once instead of each waiting out a deadline.
        self._database_down_until = 0.0

    async def authenticate(
        self,
        presented: str,
        sessionmaker: async_sessionmaker[AsyncSession],
        client: str | None = None,
    ) -> Principal | None:
        presented_hash = hash_key(presented)
        if hmac.compare_digest(presented_hash, self._admin_hash):
            return BOOTSTRAP_ADMIN
        hit, principal = self._cache.get(presented_hash)
        if not hit:
            principal = await self._lookup(presented_hash, sessionmaker, client)
        if principal is None:
            self._failures.record(client)
            return None
        if principal.expires_at is not None and principal.expires_at <= datetime.now(UTC):
            return None
        return principal

    async def _lookup(
        self, key_hash: str, sessionmaker: async_sessionmaker[AsyncSession], client: str | None
    ) -> Principal | None:
        stale = self._cache.stale(key_hash)
        if stale is None and not self._failures.allows(client):
            raise TooManyAuthenticationFailuresError(
                "Too many requests with wrong API keys from your address; try again later.",
                headers={"Retry-After": str(self._failures.retry_after)},
            )
        if time.monotonic() < self._database_down_until:
            return self._unavailable(stale)
        generation = self._cache.generation
        try:
            principal = await within(self._lookup_timeout, _load_in_session(sessionmaker, key_hash))
        except DATABASE_ERRORS as exc:
            self._database_down_until = time.monotonic() + self._retry_after
            database_log.error("database unreachable: key lookups fail", cause=exc)
            return self._unavailable(stale)
        self._cache.put(key_hash, principal, generation)
        return principal

    def invalidate(self) -> None:
        """Forget every cached key: one changed in the database (see `invalidation.py`)."""
        self._cache.clear()

    def _unavailable(self, stale: Principal | None) -> Principal:
        if stale is not None:
            return stale
        raise DatabaseUnavailableError(
            "The service cannot check API keys right now; retry shortly.",
            headers={"Retry-After": str(self._retry_after)},
        )


async def _load_in_session(
    sessionmaker: async_sessionmaker[AsyncSession], key_hash: str
) -> Principal | None:
    async with sessionmaker() as session:
        return await _load(session, key_hash)


async def _load(session: AsyncSession, key_hash: str) -> Principal | None:
    now = datetime.now(UTC)
    current = ApiKey.key_hash == key_hash
    # A rotated key's old secret, during its grace period.
    previous = and_(
        ApiKey.previous_key_hash == key_hash,
        ApiKey.previous_key_expires_at.is_not(None),
        ApiKey.previous_key_expires_at > now,
    )
    found = (
        await session.execute(
            select(ApiKey, User.role, User.active)
            .outerjoin(User, ApiKey.user_id == User.id)
            .where(or_(current, previous), ApiKey.revoked_at.is_(None))
        )
    ).first()
    if found is None:
        return None
    row, role, active = found
    if row.user_id is not None and not active:
        return None  # the owner was deactivated
    expires_at = row.expires_at
    if row.key_hash != key_hash and row.previous_key_expires_at is not None:
        grace_ends = as_utc(row.previous_key_expires_at)
        expires_at = grace_ends if expires_at is None else min(as_utc(expires_at), grace_ends)
    return Principal(
        key_id=row.id,
        name=row.name,
        is_admin=row.is_admin or role == Role.ADMIN.value,
        user_id=row.user_id,
        expires_at=as_utc(expires_at) if expires_at is not None else None,
        team_id=row.team_id,
        allowed_models=frozenset(row.allowed_models) if row.allowed_models is not None else None,
    )
