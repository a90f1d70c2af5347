"""One cursor page of any `select(Model)` whose model has a time-ordered `id` (see api/http/pagination.py)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from sqlalchemy import Select
from sqlalchemy.ext.asyncio import AsyncSession

from api.http.pagination import Page, PageParams, make_page

T = TypeVar("T")


async def page_of(
    session: AsyncSession, stmt: Select[Any], model: Any, page: PageParams, to_item: Callable[[Any], T]
) -> Page[T]:
    if page.after is not None:
        stmt = stmt.where(model.id > page.after)
    rows = list(await session.scalars(stmt.order_by(model.id).limit(page.limit + 1)))
    return make_page(rows, page, to_item)
