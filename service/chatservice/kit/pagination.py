"""Lists paginated as OpenAI's are: `object: "list"`, `data`, `first_id`, `last_id`,
`has_more`, and the next page asked for with `?after=<last_id>`.

Items are ordered by id, a stable order that needs no lookup of the `after` item (which may
have been deleted meanwhile) and that an index serves on every backend.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Annotated, Any, Literal

from fastapi import Query
from pydantic import BaseModel
from sqlalchemy import Select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import InstrumentedAttribute

MAX_PAGE = 100

Limit = Annotated[int, Query(ge=1, le=MAX_PAGE, description=f"Items per page, 1 to {MAX_PAGE}.")]
After = Annotated[
    uuid.UUID | None,
    Query(description="The `last_id` of the previous page: this page starts after it."),
]


class ListPage(BaseModel):
    object: Literal["list"] = "list"
    first_id: str | None
    last_id: str | None
    has_more: bool


async def page_of(
    session: AsyncSession,
    statement: Select[Any],
    id_column: InstrumentedAttribute[uuid.UUID],
    limit: int,
    after: uuid.UUID | None,
) -> tuple[Sequence[Any], dict[str, Any]]:
    """One page of `statement`'s rows (one query, `limit + 1` rows to learn `has_more`), and
    the list fields that describe it."""
    if after is not None:
        statement = statement.where(id_column > after)
    rows = (await session.scalars(statement.order_by(id_column).limit(limit + 1))).all()
    page = rows[:limit]
    ids = [str(row.id) for row in page]
    return page, {
        "first_id": ids[0] if ids else None,
        "last_id": ids[-1] if ids else None,
        "has_more": len(rows) > limit,
    }
