"""Checking an email and password: the same work for unknown emails, and failures limited
per email and per client address."""

from __future__ import annotations

import uuid

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from chatservice.errors import AuthenticationError, TooManyLoginFailuresError
from chatservice.keys.failure_limiter import FailureLimiter
from chatservice.users.passwords import verify_password
from chatservice.users.tables import User


class LoginGuard:
    def __init__(self, per_email: FailureLimiter, per_client: FailureLimiter) -> None:
        self._per_email = per_email
        self._per_client = per_client

    async def check(
        self, session: AsyncSession, email: str, password: str, client: str | None
    ) -> uuid.UUID:
        """The user's id; AuthenticationError for a wrong email or password."""
        email = email.strip().lower()
        for limiter, who in ((self._per_email, "this account"), (self._per_client, "your address")):
            if not limiter.allows(email if limiter is self._per_email else client):
                raise TooManyLoginFailuresError(
                    f"Too many failed logins for {who}; try again later.",
                    headers={"Retry-After": str(limiter.retry_after)},
                )
        user = await session.scalar(select(User).where(User.email == email))
        stored = user.password_hash if user is not None and user.active else None
        # Verified even without a stored hash (against a dummy): an unknown email takes as
        # long to refuse as a wrong password, so timing does not tell which emails exist.
        if not await verify_password(password, stored) or user is None:
            self._per_email.record(email)
            self._per_client.record(client)
            raise AuthenticationError("Incorrect email or password.", code="invalid_credentials")
        return user.id
