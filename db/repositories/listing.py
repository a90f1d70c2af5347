"""A page of rows of any `select(Model)` whose model has a time-ordered `id`: at most `limit` rows
after `after`, in id order. Callers that page for the API ask for one row more than they show (the
extra row only says whether a next page exists), as with OrgScopedRepository.list."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import Select
from sqlalchemy.ext.asyncio import AsyncSession


async def page_rows(
    session: AsyncSession, stmt: Select[Any], model: Any, after: uuid.UUID | None, limit: int
) -> list[Any]:
    if after is not None:
        stmt = stmt.where(model.id > after)
    return list(await session.scalars(stmt.order_by(model.id).limit(limit)))
