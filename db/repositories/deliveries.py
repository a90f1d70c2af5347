"""Delivery rows (the projection of each DeliveryWorkflow) and their proof files, per organization."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from db.models import DeliveryRow, ProofFile
from db.repositories.base import OrgScopedRepository


@dataclass(frozen=True)
class DeliverySearch:
    """The conditions of a delivery listing; each one given must hold."""

    statuses: Sequence[str] = ()
    vehicle_id: uuid.UUID | None = None
    driver_ids: Sequence[uuid.UUID | None] = ()  # each must match; None matches the unassigned
    created_from: datetime | None = None
    created_before: datetime | None = None
    due_from: datetime | None = None  # the drop-off window ends at or after
    due_before: datetime | None = None
    text: str | None = None  # in external_ref or the drop-off address


def _like(text: str) -> str:
    return "%" + text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


class DeliveryRepository(OrgScopedRepository[DeliveryRow]):
    model = DeliveryRow

    async def search(
        self, search: DeliverySearch, *, after: uuid.UUID | None, limit: int
    ) -> list[DeliveryRow]:
        filters: list[ColumnElement[bool]] = [DeliveryRow.driver_id == d for d in search.driver_ids]
        if search.statuses:
            filters.append(DeliveryRow.status.in_(search.statuses))
        if search.vehicle_id is not None:
            filters.append(DeliveryRow.vehicle_id == search.vehicle_id)
        bounds: list[tuple[Any, datetime | None, bool]] = [
            (DeliveryRow.created_at, search.created_from, True),
            (DeliveryRow.created_at, search.created_before, False),
            (DeliveryRow.window_end, search.due_from, True),
            (DeliveryRow.window_end, search.due_before, False),
        ]
        filters += [
            column >= bound if lower else column < bound
            for column, bound, lower in bounds
            if bound is not None
        ]
        if search.text:
            pattern = _like(search.text)
            filters.append(
                or_(
                    DeliveryRow.external_ref.ilike(pattern, escape="\\"),
                    DeliveryRow.dropoff_address.ilike(pattern, escape="\\"),
                )
            )
        return await self.list(after=after, limit=limit, filters=filters)


class ProofFileRepository:
    """Proof-of-delivery files (photos, signatures) by content hash; the bytes are in the blob store."""

    def __init__(self, session: AsyncSession, organization_id: uuid.UUID) -> None:
        self.session = session
        self.organization_id = organization_id

    async def uploaded_for(self, delivery_id: uuid.UUID, sha256: str) -> bool:
        found = await self.session.scalars(
            select(ProofFile).where(
                ProofFile.organization_id == self.organization_id,
                ProofFile.delivery_id == delivery_id,
                ProofFile.sha256 == sha256,
            )
        )
        return found.first() is not None

    async def known(self, sha256: str) -> bool:
        found = await self.session.scalars(
            select(ProofFile).where(
                ProofFile.organization_id == self.organization_id, ProofFile.sha256 == sha256
            )
        )
        return found.first() is not None

    def add(
        self, delivery_id: uuid.UUID, sha256: str, content_type: str, size_bytes: int, by: uuid.UUID
    ) -> None:
        self.session.add(
            ProofFile(
                organization_id=self.organization_id,
                delivery_id=delivery_id,
                sha256=sha256,
                content_type=content_type,
                size_bytes=size_bytes,
                uploaded_by=by,
            )
        )
