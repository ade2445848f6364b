"""`POST /auth/token` and login tokens: edge cases of the JWT, limits and timing."""

from __future__ import annotations

import base64
import json
import time
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import jwt
import pytest

from tests.service.harness import AUTH, Served
from tests.service.identity import (
    API,
    JWT_SECRET,
    bearer,
    create_user,
    login,
    token_of,
    unique_email,
)

ME = f"{API}/users/me"


@pytest.fixture
async def http(open_client: Callable[..., Served]) -> AsyncIterator[httpx.AsyncClient]:
    async with open_client(jwt_secret=JWT_SECRET, jwt_leeway=5, login_failures_per_minute=3) as c:
        yield c


def signed(claims: dict[str, Any], secret: str = JWT_SECRET) -> str:
    return jwt.encode(claims, secret, algorithm="HS256")


def claims_for(user_id: str, **changes: Any) -> dict[str, Any]:
    now = int(time.time())
    return {"sub": user_id, "iat": now, "exp": now + 60, "jti": uuid.uuid4().hex, **changes}


def _b64(data: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


async def test_a_login_token_works_and_says_what_it_is(http: httpx.AsyncClient) -> None:
    email = unique_email()
    user = await create_user(http, email)
    response = await login(http, email.upper())  # emails are matched normalised
    assert response.status_code == 200
    body = response.json()
    assert body["token_type"] == "bearer"
    assert body["expires_in"] == 900
    claims = jwt.decode(body["access_token"], JWT_SECRET, algorithms=["HS256"])
    assert claims["sub"] == user["id"]
    assert {"exp", "iat", "jti"} <= claims.keys()
    assert claims["exp"] - claims["iat"] == 900
    assert (await http.get(ME, headers=bearer(body["access_token"]))).status_code == 200


async def test_expired_tampered_and_unsigned_tokens_are_401(http: httpx.AsyncClient) -> None:
    email = unique_email()
    user_id = (await create_user(http, email))["id"]
    now = int(time.time())
    good = signed(claims_for(user_id))
    header, payload, signature = good.split(".")
    forged_payload = _b64(claims_for(str(uuid.uuid4())))
    bad = {
        "expired": signed(claims_for(user_id, iat=now - 120, exp=now - 30)),
        "tampered": f"{header}.{forged_payload}.{signature}",
        "wrong secret": signed(claims_for(user_id), "another-secret-" + "x" * 32),
        "alg none": f"{_b64({'alg': 'none', 'typ': 'JWT'})}.{payload}.",
        "no jti": signed({k: v for k, v in claims_for(user_id).items() if k != "jti"}),
        "unknown user": signed(claims_for(str(uuid.uuid4()))),
        "not a uuid": signed(claims_for("admin")),
        "issued in the future": signed(claims_for(user_id, iat=now + 600, exp=now + 900)),
    }
    for case, token in bad.items():
        response = await http.get(ME, headers=bearer(token))
        assert response.status_code == 401, case
        assert response.json()["error"]["code"] == "invalid_token", case
    # Within the leeway (5 s here) a token just past `exp` is still good: clocks drift.
    skewed = signed(claims_for(user_id, iat=now - 60, exp=now - 2))
    assert (await http.get(ME, headers=bearer(skewed))).status_code == 200


async def test_wrong_passwords_are_limited_per_email(http: httpx.AsyncClient) -> None:
    email = unique_email()
    await create_user(http, email)
    statuses = [(await login(http, email, "wrong password!")).status_code for _ in range(4)]
    assert statuses == [401, 401, 401, 429]
    refused = await login(http, email)  # even the right password, until the bucket refills
    assert refused.status_code == 429
    assert refused.json()["error"]["code"] == "too_many_login_failures"
    assert int(refused.headers["retry-after"]) >= 1
    other = unique_email()
    await create_user(http, other)
    assert (await login(http, other)).status_code == 200  # another account is not affected


async def test_unknown_email_and_wrong_password_take_about_as_long(
    http: httpx.AsyncClient,
) -> None:
    email = unique_email()
    await create_user(http, email)

    async def timed(username: str) -> float:
        started = time.perf_counter()
        response = await login(http, username, "not the password")
        assert response.status_code == 401
        assert response.json()["error"]["code"] == "invalid_credentials"
        return time.perf_counter() - started

    # Below the per-email limit (3): one try each, best of those, loosely compared.
    wrong_password = min([await timed(email) for _ in range(2)])
    unknown = min([await timed(unique_email("nobody")) for _ in range(2)])
    assert unknown > wrong_password / 5
    assert unknown < wrong_password * 5


async def test_login_is_disabled_without_a_secret(open_client: Callable[..., Served]) -> None:
    async with open_client() as http:
        response = await login(http, "someone@example.com", "whatever password")
    assert response.status_code == 503
    assert response.json()["error"]["code"] == "login_disabled"


async def test_malformed_logins_are_400_with_param(http: httpx.AsyncClient) -> None:
    missing = await http.post(f"{API}/auth/token", data={"username": "a@example.com"})
    assert missing.status_code == 400
    assert missing.json()["error"]["param"] == "password"
    grant = await http.post(
        f"{API}/auth/token",
        data={"username": "a@example.com", "password": "x", "grant_type": "client_credentials"},
    )
    assert grant.json()["error"]["param"] == "grant_type"
    as_json = await http.post(f"{API}/auth/token", json={"username": "a", "password": "b"})
    assert as_json.status_code == 400


async def test_deactivation_ends_login_tokens(http: httpx.AsyncClient) -> None:
    email = unique_email()
    user = await create_user(http, email)
    token = await token_of(http, email)
    assert (await http.delete(f"{API}/users/{user['id']}", headers=AUTH)).status_code == 200
    assert (await http.get(ME, headers=bearer(token))).status_code == 401
