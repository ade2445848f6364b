"""Email addresses as stored: trimmed and lower-cased, in a plain shape check (no lookups)."""

from __future__ import annotations

import re

# One @, something before it, a dotted domain after it, no spaces: what a person mistypes is
# caught; deliverability is not this service's business.
_EMAIL = re.compile(r"^[^@\s]{1,64}@[^@\s.]+(\.[^@\s.]+)+$")
MAX_EMAIL_LENGTH = 320


def normalise_email(value: str) -> str:
    """The stored form of `value`; ValueError when it is not an email address."""
    email = value.strip().lower()
    if len(email) > MAX_EMAIL_LENGTH or not _EMAIL.match(email):
        raise ValueError("must be an email address such as name@example.com")
    return email
