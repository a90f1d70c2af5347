"""Organizations, users and refresh tokens."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from db.models import Organization, RefreshToken, User
from db.repositories.base import OrgScopedRepository


class OrganizationRepository:
    """Organizations are the tenancy boundary itself, so this one is not org-scoped."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def by_slug(self, slug: str) -> Organization | None:
        result = await self.session.execute(select(Organization).where(Organization.slug == slug))
        return result.scalar_one_or_none()

    async def get(self, ident: uuid.UUID) -> Organization | None:
        return await self.session.get(Organization, ident)

    async def add(self, org: Organization) -> Organization:
        self.session.add(org)
        await self.session.flush()
        return org


class UserRepository(OrgScopedRepository[User]):
    model = User


async def find_login(session: AsyncSession, email: str) -> User | None:
    """The user for a login attempt; the only lookup not scoped (the organization is not known yet)."""
    result = await session.execute(select(User).where(User.email == email.strip().lower()))
    return result.scalar_one_or_none()


async def user_by_id(session: AsyncSession, user_id: uuid.UUID) -> User | None:
    """Any organization's user: for callers that check the organization themselves (tokens name it)."""
    return await session.get(User, user_id)


async def user_fields(
    session: AsyncSession, user_id: uuid.UUID, names: Sequence[str]
) -> tuple[Any, ...] | None:
    """The columns `names` of one user (one narrow query: authentication runs it per uncached user)."""
    columns = [getattr(User, name) for name in names]
    row = (await session.execute(select(*columns).where(User.id == user_id))).first()
    return tuple(row) if row is not None else None


class RefreshTokenRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def add(
        self, jti: uuid.UUID, user_id: uuid.UUID, family_id: uuid.UUID, expires_at: datetime
    ) -> None:
        self.session.add(RefreshToken(id=jti, user_id=user_id, family_id=family_id, expires_at=expires_at))
        await self.session.flush()

    async def get(self, jti: uuid.UUID) -> RefreshToken | None:
        return await self.session.get(RefreshToken, jti)

    async def mark_used(self, jti: uuid.UUID, now: datetime) -> bool:
        """Atomically claim a token for rotation: False if it was already used or revoked."""
        stmt = (
            update(RefreshToken)
            .where(RefreshToken.id == jti, RefreshToken.used_at.is_(None), RefreshToken.revoked_at.is_(None))
            .values(used_at=now)
        )
        result = await self.session.execute(stmt)
        return bool(result.rowcount)  # type: ignore[attr-defined]

    async def revoke_user(self, user_id: uuid.UUID, now: datetime) -> None:
        """Every session of the user ends (password change, deactivation)."""
        await self.session.execute(
            update(RefreshToken)
            .where(RefreshToken.user_id == user_id, RefreshToken.revoked_at.is_(None))
            .values(revoked_at=now)
        )

    async def revoke_family(self, family_id: uuid.UUID, now: datetime) -> None:
        stmt = (
            update(RefreshToken)
            .where(RefreshToken.family_id == family_id, RefreshToken.revoked_at.is_(None))
            .values(revoked_at=now)
        )
        await self.session.execute(stmt)
