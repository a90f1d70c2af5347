"""Cursor pagination over time-ordered ids: the cursor is the last id of the previous page."""

from __future__ import annotations

import base64
import binascii
import uuid
from collections.abc import Callable, Sequence
from typing import Annotated, Any, Generic, TypeVar

from fastapi import Depends, Query, Request
from pydantic import BaseModel

from api.errors import ProblemError

T = TypeVar("T")


class Page(BaseModel, Generic[T]):
    items: list[T]
    next_cursor: str | None = None


def encode_cursor(last_id: uuid.UUID) -> str:
    return base64.urlsafe_b64encode(last_id.bytes).rstrip(b"=").decode()


def decode_cursor(cursor: str) -> uuid.UUID:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        return uuid.UUID(bytes=raw)
    except (binascii.Error, ValueError):
        raise ProblemError(400, "invalid_cursor", "the cursor is not one this API returned") from None


class PageParams:
    def __init__(self, after: uuid.UUID | None, limit: int) -> None:
        self.after = after
        self.limit = limit


def page_params(
    request: Request,
    cursor: Annotated[
        str | None, Query(max_length=64, description="next_cursor from the previous page")
    ] = None,
    limit: Annotated[
        int | None, Query(ge=1, description="page size (capped by the server's maximum)")
    ] = None,
) -> PageParams:
    settings = request.app.state.resources.settings
    size = limit or settings.default_page_size
    if size > settings.max_page_size:
        raise ProblemError(400, "page_too_large", f"limit may be at most {settings.max_page_size}")
    return PageParams(decode_cursor(cursor) if cursor else None, size)


PageDep = Annotated[PageParams, Depends(page_params)]


def make_page(rows: Sequence[Any], params: PageParams, to_item: Callable[[Any], T]) -> Page[T]:
    # Repositories are asked for limit+1 rows: the extra one only tells whether a next page exists.
    has_more = len(rows) > params.limit
    kept = rows[: params.limit]
    cursor = encode_cursor(kept[-1].id) if has_more and kept else None
    return Page[T](items=[to_item(r) for r in kept], next_cursor=cursor)
