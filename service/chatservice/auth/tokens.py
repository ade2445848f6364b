"""Login tokens: HS256 JWTs with `sub` (the user's id), `iat`, `exp` and a `jti`."""

from __future__ import annotations

import secrets
import time
import uuid
from dataclasses import dataclass

import jwt

ALGORITHM = "HS256"
_REQUIRED = ["sub", "exp", "iat", "jti"]


class InvalidTokenError(Exception):
    """The token is malformed, tampered with, expired, or not one of ours."""


@dataclass(frozen=True, slots=True)
class Claims:
    user_id: uuid.UUID
    issued_at: float
    expires_at: float
    token_id: str


def looks_like_jwt(presented: str) -> bool:
    # Keys are `sk-…` with no dots; a JWT is three base64url parts, its header `{"…` → `eyJ`.
    return presented.startswith("eyJ") and presented.count(".") == 2


def issue(user_id: uuid.UUID, secret: str, lifetime: float) -> str:
    now = int(time.time())
    claims = {
        "sub": str(user_id),
        "iat": now,
        "exp": now + int(lifetime),
        "jti": secrets.token_urlsafe(16),
    }
    return jwt.encode(claims, secret, algorithm=ALGORITHM)


def verify(token: str, secret: str, leeway: float) -> Claims:
    try:
        # `algorithms` is one fixed value: `alg: none` and any other algorithm are refused.
        claims = jwt.decode(
            token, secret, algorithms=[ALGORITHM], leeway=leeway,
            options={"require": _REQUIRED, "verify_iat": True},
        )  # fmt: skip
        if claims["iat"] > time.time() + leeway:
            raise InvalidTokenError("issued in the future")
        return Claims(
            user_id=uuid.UUID(str(claims["sub"])),
            issued_at=float(claims["iat"]),
            expires_at=float(claims["exp"]),
            token_id=str(claims["jti"]),
        )
    except (jwt.PyJWTError, ValueError, TypeError) as exc:
        raise InvalidTokenError(str(exc)) from None
