"""The lookups of the operator commands in tools/ (`waybill analytics`, `waybill import`): an
organization named by slug or id, and the user a command acts as."""

from __future__ import annotations

import uuid

from sqlalchemy import ColumnElement, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from db.models import Organization, User
from domain.roles import Role


async def organization_ids(session: AsyncSession, ref: str) -> list[uuid.UUID]:
    """The organizations whose slug is `ref`, or whose id it is."""
    cond: ColumnElement[bool]
    try:
        cond = or_(Organization.slug == ref, Organization.id == uuid.UUID(ref))
    except ValueError:
        cond = Organization.slug == ref
    return list((await session.scalars(select(Organization.id).where(cond))).all())


async def acting_user(session: AsyncSession, organization_id: uuid.UUID, email: str | None) -> User | None:
    """The active user with `email` (any role), or else the organization's first active admin."""
    stmt = select(User).where(User.organization_id == organization_id, User.active.is_(True))
    if email:
        stmt = stmt.where(User.email == email.lower())
    else:
        stmt = stmt.where(User.role == Role.ADMIN.value).order_by(User.created_at)
    return (await session.scalars(stmt.limit(1))).first()
