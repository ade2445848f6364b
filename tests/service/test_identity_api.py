"""Users, teams, keys and logins through the API, on real PostgreSQL and on SQLite."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

import httpx
import pytest

from chatservice.main import create_app
from tests.service.harness import AUTH, CHAT, Served, make_settings, serve
from tests.service.identity import (
    API,
    JWT_SECRET,
    PASSWORD,
    bearer,
    create_user,
    login,
    token_of,
    unique_email,
)


@pytest.fixture(params=["postgresql", "sqlite"])
def served(request: pytest.FixtureRequest, sqlite_url: str) -> Served:
    # Synchronous: resolving the PostgreSQL fixtures runs the migrations with asyncio.run.
    if request.param == "postgresql":
        open_client: Callable[..., Served] = request.getfixturevalue("open_client")
        return open_client(jwt_secret=JWT_SECRET)
    return serve(create_app(make_settings(sqlite_url, jwt_secret=JWT_SECRET)))


@pytest.fixture
async def api(served: Served) -> AsyncIterator[httpx.AsyncClient]:
    async with served as http:
        yield http


HELLO = [{"role": "user", "content": "hi"}]


def error_of(response: httpx.Response) -> dict[str, object]:
    error: dict[str, object] = response.json()["error"]
    return error


async def test_users_lifecycle(api: httpx.AsyncClient) -> None:
    email = unique_email("alice")
    alice = await create_user(api, email)
    assert alice["email"] == email.lower()
    assert alice["role"] == "member"
    assert alice["active"] is True
    assert "password" not in alice
    assert "password_hash" not in alice

    duplicate = await api.post(
        f"{API}/users", headers=AUTH, json={"email": email.upper(), "password": PASSWORD}
    )
    assert duplicate.status_code == 409
    assert error_of(duplicate)["param"] == "email"
    weak = await api.post(
        f"{API}/users", headers=AUTH, json={"email": unique_email(), "password": "short"}
    )
    assert weak.status_code == 400
    assert error_of(weak)["param"] == "password"
    malformed = await api.post(
        f"{API}/users", headers=AUTH, json={"email": "not-an-email", "password": PASSWORD}
    )
    assert malformed.status_code == 400
    assert error_of(malformed)["param"] == "email"

    token = await token_of(api, email)
    me = await api.get(f"{API}/users/me", headers=bearer(token))
    assert me.status_code == 200
    assert me.json()["id"] == alice["id"]
    bob = await create_user(api, unique_email("bob"))
    # A member learns nothing about other users, and cannot make themselves admin.
    assert (await api.get(f"{API}/users/{bob['id']}", headers=bearer(token))).status_code == 404
    assert (await api.get(f"{API}/users", headers=bearer(token))).status_code == 403
    promote = await api.patch(
        f"{API}/users/{alice['id']}", headers=bearer(token), json={"role": "admin"}
    )
    assert promote.status_code == 403
    assert (
        await api.post(f"{API}/users", headers=bearer(token), json={"email": unique_email()})
    ).status_code in (400, 403)
    new_password = "another long passphrase"
    changed = await api.patch(
        f"{API}/users/{alice['id']}", headers=bearer(token), json={"password": new_password}
    )
    assert changed.status_code == 200
    assert (await login(api, email)).status_code == 401
    assert (await login(api, email, new_password)).status_code == 200

    listed = await api.get(f"{API}/users", headers=AUTH, params={"limit": 100})
    assert listed.json()["object"] == "list"
    assert {alice["id"], bob["id"]} <= {u["id"] for u in listed.json()["data"]}

    key = await api.post(f"{API}/keys", headers=bearer(token), json={"name": "laptop"})
    assert key.status_code == 201
    secret = key.json()["key"]
    assert (await api.get(f"{API}/models", headers=bearer(secret))).status_code == 200

    gone = await api.delete(f"{API}/users/{alice['id']}", headers=AUTH)
    assert gone.status_code == 200
    assert gone.json()["active"] is False
    # Deactivation ends the user's logins and keys at once.
    assert (await api.get(f"{API}/users/me", headers=bearer(token))).status_code == 401
    assert (await api.get(f"{API}/models", headers=bearer(secret))).status_code == 401
    assert (await login(api, email, new_password)).status_code == 401


async def test_keys_lifecycle(api: httpx.AsyncClient) -> None:
    owner_email, other_email = unique_email("owner"), unique_email("other")
    owner = await create_user(api, owner_email)
    other_user = await create_user(api, other_email)
    token, other = await token_of(api, owner_email), await token_of(api, other_email)

    created = await api.post(
        f"{API}/keys",
        headers=bearer(token),
        json={"name": "ci", "allowed_models": ["echo"], "metadata": {"purpose": "ci"}},
    )
    assert created.status_code == 201, created.text
    body = created.json()
    secret, key_id = body["key"], body["id"]
    assert body["user_id"] == owner["id"]
    assert secret.startswith(body["display_prefix"])

    listed = (await api.get(f"{API}/keys", headers=bearer(token))).json()
    assert [k["id"] for k in listed["data"]] == [key_id]
    assert secret not in str(listed)
    assert "key_hash" not in str(listed)
    assert "key" not in listed["data"][0]

    models = await api.get(f"{API}/models", headers=bearer(secret))
    assert [m["id"] for m in models.json()["data"]] == ["echo"]
    refused = await api.post(
        CHAT, headers=bearer(secret), json={"model": "other", "messages": HELLO}
    )
    assert refused.status_code == 403
    assert error_of(refused)["code"] == "model_not_allowed"
    # The relayed routes (and their /v1 aliases) hold the key to the same models.
    for path, payload in (
        ("/v1/embeddings", {"model": "other", "input": "hi"}),
        (f"{API}/completions", {"model": "other", "prompt": "hi"}),
    ):
        relayed = await api.post(path, headers=bearer(secret), json=payload)
        assert relayed.status_code == 403, path
        assert error_of(relayed)["code"] == "model_not_allowed"
    allowed = await api.post(
        CHAT, headers=bearer(secret), json={"model": "echo", "messages": HELLO}
    )
    assert allowed.status_code == 200

    # Another member: as if the key did not exist.
    for method in ("GET", "PATCH", "DELETE"):
        response = await api.request(
            method, f"{API}/keys/{key_id}", headers=bearer(other),
            json={"name": "x"} if method == "PATCH" else None,
        )  # fmt: skip
        assert response.status_code == 404, method
    assert (await api.post(f"{API}/keys/{key_id}/rotate", headers=bearer(other))).status_code == 404
    # A key manages its owner's keys.
    renamed = await api.patch(
        f"{API}/keys/{key_id}",
        headers=bearer(secret),
        json={"name": "ci-2", "allowed_models": None},
    )
    assert renamed.status_code == 200
    assert renamed.json()["allowed_models"] is None
    models = await api.get(f"{API}/models", headers=bearer(secret))
    everything = await api.get(f"{API}/models", headers=AUTH)
    assert models.json()["data"] == everything.json()["data"]

    rotated = await api.post(f"{API}/keys/{key_id}/rotate", headers=bearer(token))
    assert rotated.status_code == 200
    new_secret = rotated.json()["key"]
    assert new_secret != secret
    for usable in (secret, new_secret):  # the old one during its grace period
        assert (await api.get(f"{API}/models", headers=bearer(usable))).status_code == 200
    again = await api.post(
        f"{API}/keys/{key_id}/rotate", headers=bearer(token), json={"grace_seconds": 0}
    )
    newest = again.json()["key"]
    assert (await api.get(f"{API}/models", headers=bearer(new_secret))).status_code == 401
    assert (await api.get(f"{API}/models", headers=bearer(newest))).status_code == 200

    revoked = await api.delete(f"{API}/keys/{key_id}", headers=bearer(token))
    assert revoked.status_code == 200
    assert revoked.json()["revoked_at"] is not None
    assert (await api.get(f"{API}/models", headers=bearer(newest))).status_code == 401
    assert (await api.post(f"{API}/keys/{key_id}/rotate", headers=AUTH)).status_code == 409

    # A member may not mint keys for someone else (an id derived from the owner's could be the
    # owner's own: the other user is real).
    for_other = await api.post(
        f"{API}/keys", headers=bearer(token), json={"name": "x", "user_id": other_user["id"]}
    )
    assert for_other.status_code == 403
    assert error_of(for_other)["param"] == "user_id"


async def test_teams_and_members(api: httpx.AsyncClient) -> None:
    member_email = unique_email("member")
    member = await create_user(api, member_email)
    outsider_email = unique_email("outsider")
    await create_user(api, outsider_email)
    name = unique_email("team")
    team = await api.post(f"{API}/teams", headers=AUTH, json={"name": name})
    assert team.status_code == 201
    team_id = team.json()["id"]
    assert (await api.post(f"{API}/teams", headers=AUTH, json={"name": name})).status_code == 409
    added = await api.post(
        f"{API}/teams/{team_id}/members", headers=AUTH, json={"user_id": member["id"]}
    )
    assert added.status_code == 201
    again = await api.post(
        f"{API}/teams/{team_id}/members", headers=AUTH, json={"user_id": member["id"]}
    )
    assert again.status_code == 409

    token, outsider = await token_of(api, member_email), await token_of(api, outsider_email)
    mine = await api.get(f"{API}/teams", headers=bearer(token))
    assert [t["id"] for t in mine.json()["data"]] == [team_id]
    assert (await api.get(f"{API}/teams", headers=bearer(outsider))).json()["data"] == []
    assert (await api.get(f"{API}/teams/{team_id}", headers=bearer(outsider))).status_code == 404
    members = await api.get(f"{API}/teams/{team_id}/members", headers=bearer(token))
    assert [m["email"] for m in members.json()["data"]] == [member_email.lower()]
    team_key = await api.post(
        f"{API}/keys", headers=bearer(token), json={"name": "team", "team_id": team_id}
    )
    assert team_key.status_code == 201
    assert team_key.json()["team_id"] == team_id
    refused = await api.post(
        f"{API}/keys", headers=bearer(outsider), json={"name": "team", "team_id": team_id}
    )
    assert refused.status_code == 404
    renamed = await api.patch(f"{API}/teams/{team_id}", headers=AUTH, json={"name": name + "-2"})
    assert renamed.json()["name"] == name + "-2"
    by_member = await api.patch(f"{API}/teams/{team_id}", headers=bearer(token), json={"name": "x"})
    assert by_member.status_code == 403
    removed = await api.delete(f"{API}/teams/{team_id}/members/{member['id']}", headers=AUTH)
    assert removed.status_code == 204
    assert (await api.get(f"{API}/teams/{team_id}", headers=bearer(token))).status_code == 404
    assert (await api.delete(f"{API}/teams/{team_id}", headers=AUTH)).status_code == 204
    key = await api.get(f"{API}/keys/{team_key.json()['id']}", headers=AUTH)
    assert key.json()["team_id"] is None


async def test_the_bootstrap_key_is_an_admin_without_a_user(api: httpx.AsyncClient) -> None:
    assert (await api.get(f"{API}/users", headers=AUTH)).status_code == 200
    me = await api.get(f"{API}/users/me", headers=AUTH)
    assert me.status_code == 403
    assert error_of(me)["code"] == "no_user"
    missing = await api.get(f"{API}/users", headers=bearer("eyJhbGciOi.eyJzdWIi.c2ln"))
    assert missing.status_code == 401
    assert error_of(missing)["code"] == "invalid_token"
