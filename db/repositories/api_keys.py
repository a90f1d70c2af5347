"""API keys of inbound integrations (only each key's SHA-256 is stored)."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from db.models import ApiKey
from db.repositories.base import OrgScopedRepository


class ApiKeyRepository(OrgScopedRepository[ApiKey]):
    model = ApiKey

    async def all(self) -> list[ApiKey]:
        return list(await self.session.scalars(self._scoped().order_by(ApiKey.id)))


async def key_by_digest(session: AsyncSession, key_sha256: str) -> ApiKey | None:
    """The key with this digest, of any organization: the key itself tells whose it is."""
    return (await session.scalars(select(ApiKey).where(ApiKey.key_sha256 == key_sha256))).one_or_none()
