"""Helpers for the identity tests: the app with logins on, on PostgreSQL or SQLite."""

from __future__ import annotations

import secrets
from typing import Any

import httpx

from tests.service.harness import AUTH

JWT_SECRET = "jwt-" + secrets.token_urlsafe(32)
PASSWORD = "correct horse battery staple"
API = "/api/v1"


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def unique_email(prefix: str = "user") -> str:
    return f"{prefix}-{secrets.token_hex(4)}@Example.com"


async def create_user(http: httpx.AsyncClient, email: str, **extra: Any) -> dict[str, Any]:
    response = await http.post(
        f"{API}/users", headers=AUTH, json={"email": email, "password": PASSWORD, **extra}
    )
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


async def login(http: httpx.AsyncClient, email: str, password: str = PASSWORD) -> httpx.Response:
    return await http.post(f"{API}/auth/token", data={"username": email, "password": password})


async def token_of(http: httpx.AsyncClient, email: str) -> str:
    response = await login(http, email)
    assert response.status_code == 200, response.text
    token: str = response.json()["access_token"]
    return token
