"""OpenAI-style lists over 250 rows on PostgreSQL: every row once, in pages of at most 100."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
from sqlalchemy import insert
from sqlalchemy.ext.asyncio import AsyncConnection

from chatservice.keys.tables import ApiKey
from chatservice.users.tables import User
from tests.service.harness import AUTH
from tests.service.identity import API

ROWS = 250


async def pages(
    http: httpx.AsyncClient, path: str, limit: int, **filters: str
) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    # The filters go in `params`, not the path: httpx 0.29 drops a path's query when given params.
    params: dict[str, Any] = {"limit": limit, **filters}
    for _ in range(100):  # bounded: a cursor that never ends fails the test, not the run
        response = await http.get(path, headers=AUTH, params=params, timeout=10)
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["object"] == "list"
        assert len(body["data"]) <= limit
        if body["data"]:
            assert body["first_id"] == body["data"][0]["id"]
            assert body["last_id"] == body["data"][-1]["id"]
        found.extend(body["data"])
        if not body["has_more"]:
            return found
        params["after"] = body["last_id"]
    raise AssertionError("the list did not end")


async def test_users_and_keys_page_through_250_rows(
    client: httpx.AsyncClient, pg_connection: AsyncConnection
) -> None:
    user_ids = [uuid.uuid4() for _ in range(ROWS)]
    # One statement each, on the test's one connection: no connection per row.
    await pg_connection.execute(
        insert(User), [{"id": i, "email": f"page-{i.hex}@example.com"} for i in user_ids]
    )
    owner = user_ids[0]
    await pg_connection.execute(
        insert(ApiKey),
        [
            {"name": f"k{n}", "key_hash": uuid.uuid4().hex * 2, "display_prefix": "sk-x",
             "user_id": owner}
            for n in range(ROWS)
        ],
    )  # fmt: skip

    users = await pages(client, f"{API}/users", limit=100)
    ids = [u["id"] for u in users]
    assert len(ids) == len(set(ids)), "no user twice"
    assert {str(i) for i in user_ids} <= set(ids)
    assert ids == sorted(ids, key=uuid.UUID)

    keys = await pages(client, f"{API}/keys", limit=37, user_id=str(owner))
    assert len(keys) == ROWS
    assert len({k["id"] for k in keys}) == ROWS
    # A cursor past the end is an empty last page.
    last = await client.get(
        f"{API}/users", headers=AUTH, params={"after": str(uuid.UUID(int=2**128 - 1))}
    )
    assert last.json() == {
        "object": "list",
        "data": [],
        "first_id": None,
        "last_id": None,
        "has_more": False,
    }
    too_many = await client.get(f"{API}/users", headers=AUTH, params={"limit": 101})
    assert too_many.status_code == 400
    assert too_many.json()["error"]["param"] == "limit"
