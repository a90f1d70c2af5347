"""What the resource services share: fetch-or-404, reference checks, conflict mapping, and `Entity`,
the list/read/create/update/delete of an organization's rows answered as their schema."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from pydantic import BaseModel
from sqlalchemy.ext.asyncio import AsyncSession

from api.errors import ProblemError, not_found
from api.http.pagination import Page, PageParams, make_page
from db.base import Base
from db.repositories.base import IntegrityConflict, OrgScopedRepository

M = TypeVar("M", bound=Base)
Out = TypeVar("Out")
Values = dict[str, Any]


async def fetch(repo: OrgScopedRepository[Any], ident: uuid.UUID, kind: str) -> Any:
    obj = await repo.get(ident)
    if obj is None:
        raise not_found(kind, ident)
    return obj


NAMED_IN_DETAIL, NAMED_IN_ERRORS = 10, 100  # a list may hold thousands of ids


def _invalid_reference(field: str, kind: str, bad: list[tuple[list[str | int], uuid.UUID]]) -> ProblemError:
    # Another organization's id and one that exists nowhere get the same answer: no existence oracle.
    named = ", ".join(str(ident) for _, ident in bad[:NAMED_IN_DETAIL])
    if len(bad) > NAMED_IN_DETAIL:
        named += f" and {len(bad) - NAMED_IN_DETAIL} more"
    return ProblemError(
        422,
        "invalid_reference",
        f"{field}: no such {kind} {named}",
        errors=[
            {"location": location, "message": "unknown id", "type": "reference"}
            for location, _ in bad[:NAMED_IN_ERRORS]
        ],
    )


async def require_reference(repo: OrgScopedRepository[Any], ident: uuid.UUID | None, field: str) -> None:
    """A body field that names another row must name one of the caller's organization."""
    if ident is not None and await repo.get(ident) is None:
        raise _invalid_reference(field, field.removesuffix("_id"), [(["body", field], ident)])


async def require_references(
    repo: OrgScopedRepository[Any], idents: Sequence[uuid.UUID] | None, field: str
) -> None:
    """Every id of a body list must name a row of the caller's organization: all checked in one
    query, each bad one named once, at its first position in the list."""
    if not idents:
        return
    found = await repo.existing(set(idents))
    first: dict[uuid.UUID, int] = {}
    for i, ident in enumerate(idents):
        first.setdefault(ident, i)
    bad: list[tuple[list[str | int], uuid.UUID]] = [
        (["body", field, i], ident) for ident, i in first.items() if ident not in found
    ]
    if bad:
        raise _invalid_reference(field, field.removesuffix("_ids"), bad)


def conflict_from(exc: IntegrityConflict, kind: str) -> ProblemError:
    if "name" in exc.constraint:
        return ProblemError(409, f"{kind}_name_taken", f"a {kind} with this name already exists")
    if "user_id" in exc.constraint:
        return ProblemError(409, "user_already_linked", "this user is already linked to another driver")
    return ProblemError(409, "conflict", f"the {kind} conflicts with existing data ({exc.constraint})")


async def add_or_conflict(repo: OrgScopedRepository[Any], obj: Any, kind: str) -> None:
    try:
        await repo.add(obj)
    except IntegrityConflict as exc:
        raise conflict_from(exc, kind) from None


async def flush_or_conflict(repo: OrgScopedRepository[Any], kind: str) -> None:
    try:
        await repo.flush()
    except IntegrityConflict as exc:
        raise conflict_from(exc, kind) from None


def changes(body: BaseModel) -> dict[str, Any]:
    """The fields a PATCH body actually set (null clears a nullable field)."""
    return body.model_dump(exclude_unset=True)


@dataclass(frozen=True)
class Entity(Generic[M, Out]):
    """One kind of organization-scoped row: `apply` sets a body's fields on a row (422 for a field that
    cannot be null), `check` validates the ids a body names, `to_out` is the row's response."""

    kind: str
    repository: Callable[[AsyncSession, uuid.UUID], OrgScopedRepository[M]]
    to_out: Callable[[M], Out]
    apply: Callable[[M, Values], None]
    check: Callable[[AsyncSession, uuid.UUID, Values], Awaitable[None]] | None = None
    before_delete: Callable[[AsyncSession, uuid.UUID, M], Awaitable[None]] | None = None  # may refuse

    async def page(self, session: AsyncSession, org: uuid.UUID, page: PageParams) -> Page[Out]:
        rows = await self.repository(session, org).list(after=page.after, limit=page.limit + 1)
        return make_page(rows, page, self.to_out)

    async def row(self, session: AsyncSession, org: uuid.UUID, ident: uuid.UUID) -> M:
        row: M = await fetch(self.repository(session, org), ident, self.kind)
        return row

    async def read(self, session: AsyncSession, org: uuid.UUID, ident: uuid.UUID) -> Out:
        return self.to_out(await self.row(session, org, ident))

    async def create(self, session: AsyncSession, org: uuid.UUID, values: Values) -> Out:
        if self.check is not None:
            await self.check(session, org, values)
        repo = self.repository(session, org)
        row = repo.new()
        self.apply(row, values)
        await add_or_conflict(repo, row, self.kind)
        await session.commit()
        return self.to_out(row)

    async def update(self, session: AsyncSession, org: uuid.UUID, ident: uuid.UUID, values: Values) -> Out:
        """A PATCH: only the fields the body set (`changes`) are in `values`."""
        repo = self.repository(session, org)
        row: M = await fetch(repo, ident, self.kind)
        if self.check is not None:
            await self.check(session, org, values)
        self.apply(row, values)
        await flush_or_conflict(repo, self.kind)
        await session.commit()
        return self.to_out(row)

    async def delete(self, session: AsyncSession, org: uuid.UUID, ident: uuid.UUID) -> None:
        repo = self.repository(session, org)
        row: M = await fetch(repo, ident, self.kind)
        if self.before_delete is not None:
            await self.before_delete(session, org, row)
        await repo.delete(row)
        await session.commit()
