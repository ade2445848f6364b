"""`POST /auth/token`: the OAuth2 password flow, answering a short-lived JWT."""

from __future__ import annotations

from typing import Any, Literal
from urllib.parse import parse_qsl

from fastapi import APIRouter, Request
from pydantic import BaseModel

from chatservice.auth import tokens
from chatservice.config import API_PREFIX
from chatservice.errors import InvalidRequestError, LoginDisabledError
from chatservice.kit.api_docs import error_responses
from chatservice.kit.deps import RuntimeDep, SessionDep

router = APIRouter(prefix=f"{API_PREFIX}/auth", tags=["auth"])

_FORM_FIELDS = 16
_FORM: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "application/x-www-form-urlencoded": {
                "schema": {
                    "type": "object",
                    "required": ["username", "password"],
                    "properties": {
                        "grant_type": {"type": "string", "enum": ["password"]},
                        "username": {"type": "string", "minLength": 1, "maxLength": 320,
                                     "description": "The user's email."},
                        "password": {"type": "string", "minLength": 1, "maxLength": 256},
                        "scope": {"type": "string", "maxLength": 200},
                    },
                }
            }
        },
    }
}  # fmt: skip


class Token(BaseModel):
    access_token: str
    token_type: Literal["bearer"] = "bearer"  # noqa: S105 - a scheme name
    expires_in: int


@router.post(
    "/token", response_model=Token, summary="Log in: an email and password for a login token",
    responses=error_responses(400, 401, 429, 503), openapi_extra=_FORM,
)  # fmt: skip
async def login(request: Request, runtime: RuntimeDep, session: SessionDep) -> Token:
    settings = runtime.settings
    if settings.jwt_secret is None:
        raise LoginDisabledError("Login is disabled: CHATSERVICE_JWT_SECRET is not set.")
    form = await _form(request)
    client = request.client.host if request.client is not None else None
    user_id = await runtime.login.check(session, form["username"], form["password"], client)
    token = tokens.issue(user_id, settings.jwt_secret.get_secret_value(), settings.jwt_lifetime)
    return Token(access_token=token, expires_in=int(settings.jwt_lifetime))


async def _form(request: Request) -> dict[str, str]:
    """The urlencoded form, checked as its schema says (no multipart parser needed)."""
    content_type = request.headers.get("content-type", "").partition(";")[0].strip().lower()
    if content_type != "application/x-www-form-urlencoded":
        raise InvalidRequestError(
            "Send the login as an `application/x-www-form-urlencoded` form.", code="invalid_value"
        )
    try:
        pairs = parse_qsl(
            (await request.body()).decode(), keep_blank_values=True, max_num_fields=_FORM_FIELDS
        )
    except (UnicodeDecodeError, ValueError):
        raise InvalidRequestError("The form could not be parsed.", code="invalid_value") from None
    form = dict(pairs)
    limits = {"username": 320, "password": 256}
    for field, longest in limits.items():
        if not 1 <= len(form.get(field, "")) <= longest:
            raise InvalidRequestError(
                f"Invalid value for '{field}': 1 to {longest} characters required.",
                param=field, code="invalid_value",
            )  # fmt: skip
    if form.get("grant_type", "password") != "password":
        raise InvalidRequestError(
            "Only the `password` grant type is supported.", param="grant_type",
            code="unsupported_grant_type",
        )  # fmt: skip
    if len(form.get("scope", "")) > 200:
        raise InvalidRequestError("Invalid value for 'scope'.", param="scope", code="invalid_value")
    return form
