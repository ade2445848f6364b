"""argon2id password hashes, computed off the event loop (each costs tens of milliseconds)."""

from __future__ import annotations

import asyncio
import secrets
from functools import cache

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

MIN_PASSWORD_LENGTH = 12
MAX_PASSWORD_LENGTH = 256
# Twelve characters of one or two symbols (`aaaaaaaaaaaa`, `abababababab`) are not a password.
MIN_DISTINCT_CHARACTERS = 5

# argon2-cffi's defaults are RFC 9106's second recommendation (argon2id, 64 MiB, t=3, p=4).
_hasher = PasswordHasher()


def password_problem(password: str) -> str | None:
    """Why `password` is refused, or None."""
    if len(password) < MIN_PASSWORD_LENGTH:
        return f"must be at least {MIN_PASSWORD_LENGTH} characters long"
    if len(password) > MAX_PASSWORD_LENGTH:
        return f"must be at most {MAX_PASSWORD_LENGTH} characters long"
    if len(set(password)) < MIN_DISTINCT_CHARACTERS:
        return f"must use at least {MIN_DISTINCT_CHARACTERS} different characters"
    return None


async def hash_password(password: str) -> str:
    return await asyncio.to_thread(_hasher.hash, password)


def hash_password_sync(password: str) -> str:
    return _hasher.hash(password)


@cache
def _dummy_hash() -> str:
    # Same parameters as real hashes, so checking it costs what checking a real one does.
    return _hasher.hash(secrets.token_urlsafe(16))


async def verify_password(password: str, stored: str | None) -> bool:
    """Whether `password` matches `stored`. With no stored hash (unknown email, a user who
    cannot log in) a dummy hash is checked instead, so the answer takes as long either way."""
    return await asyncio.to_thread(_verify, password, stored)


def _verify(password: str, stored: str | None) -> bool:
    try:
        return _hasher.verify(stored or _dummy_hash(), password) and stored is not None
    except (VerificationError, InvalidHashError):
        return False
