"""Organization-scoped access shared by the entity repositories."""

from __future__ import annotations

import uuid
from collections.abc import Collection, Sequence
from typing import Any, ClassVar, Generic, TypeVar

from sqlalchemy import ColumnElement, Select, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from db.base import Base

M = TypeVar("M", bound=Base)


class IntegrityConflict(Exception):
    """A write broke a unique or foreign-key constraint; the message names the constraint."""

    def __init__(self, constraint: str) -> None:
        super().__init__(constraint)
        self.constraint = constraint


class OrgScopedRepository(Generic[M]):
    """CRUD for a model with `organization_id` and a time-ordered `id` (cursor = last id seen)."""

    model: ClassVar[type[Any]]

    def __init__(self, session: AsyncSession, organization_id: uuid.UUID) -> None:
        self.session = session
        self.organization_id = organization_id

    def _scoped(self) -> Select[M]:
        return select(self.model).where(self.model.organization_id == self.organization_id)

    async def get(self, ident: uuid.UUID) -> M | None:
        return (await self.session.scalars(self._scoped().where(self.model.id == ident))).one_or_none()

    async def owned(self, ident: Any) -> M | None:
        """The row with primary key `ident` if it is the organization's (found by primary key, so a row
        the session holds already costs no query)."""
        row = await self.session.get(self.model, ident)
        return row if row is not None and row.organization_id == self.organization_id else None

    async def get_many(self, idents: Collection[uuid.UUID]) -> list[M]:
        """The organization's rows among `idents` (one query)."""
        if not idents:
            return []
        return list(await self.session.scalars(self._scoped().where(self.model.id.in_(idents))))

    def new(self, **values: Any) -> M:
        """A row of the organization, not added yet (`add` writes it)."""
        row: M = self.model(organization_id=self.organization_id, **values)
        return row

    async def existing(self, idents: Collection[uuid.UUID]) -> set[uuid.UUID]:
        """Which of `idents` are rows of the organization (one query)."""
        if not idents:
            return set()
        stmt = select(self.model.id).where(
            self.model.organization_id == self.organization_id, self.model.id.in_(idents)
        )
        return set(await self.session.scalars(stmt))

    async def list(
        self, *, after: uuid.UUID | None, limit: int, filters: Sequence[ColumnElement[bool]] = ()
    ) -> list[M]:
        stmt = self._scoped().where(*filters).order_by(self.model.id).limit(limit)
        if after is not None:
            stmt = stmt.where(self.model.id > after)
        return list(await self.session.scalars(stmt))

    async def add(self, obj: M) -> M:
        if getattr(obj, "organization_id", None) != self.organization_id:
            raise ValueError("object belongs to another organization")
        self.session.add(obj)
        await self.flush()
        return obj

    async def delete(self, obj: M) -> None:
        await self.session.delete(obj)
        await self.flush()

    async def flush(self) -> None:
        try:
            await self.session.flush()
        except IntegrityError as exc:
            await self.session.rollback()
            raise IntegrityConflict(_constraint_name(exc)) from exc


def _constraint_name(exc: IntegrityError) -> str:
    orig = exc.orig
    diag = getattr(orig, "diag", None)  # psycopg names the constraint
    if diag is not None and getattr(diag, "constraint_name", None):
        return str(diag.constraint_name)
    return str(orig)  # SQLite: "UNIQUE constraint failed: vehicles.organization_id, vehicles.name"
