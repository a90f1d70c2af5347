"""Vehicle routes (the projection of each RouteWorkflow), scoped to an organization."""

from __future__ import annotations

import uuid
from collections.abc import Sequence

from db.models import RouteRow
from db.repositories.base import OrgScopedRepository


class RouteRepository(OrgScopedRepository[RouteRow]):
    model = RouteRow

    async def search(
        self,
        *,
        shift: str | None,
        vehicle_id: uuid.UUID | None,
        depot_id: uuid.UUID | None,
        driver_ids: Sequence[uuid.UUID | None] = (),  # each must match; None matches the driverless
        limit: int,
    ) -> list[RouteRow]:
        """The organization's routes, newest shift first."""
        q = self._scoped().where(*(RouteRow.driver_id == d for d in driver_ids))
        if shift is not None:
            q = q.where(RouteRow.shift == shift)
        if vehicle_id is not None:
            q = q.where(RouteRow.vehicle_id == vehicle_id)
        if depot_id is not None:
            q = q.where(RouteRow.depot_id == depot_id)
        return list(
            (await self.session.scalars(q.order_by(RouteRow.shift.desc(), RouteRow.id).limit(limit))).all()
        )

    async def latest_of_driver(self, driver_id: uuid.UUID, limit: int) -> list[RouteRow]:
        """The driver's routes, newest shift and latest change first."""
        q = self._scoped().where(RouteRow.driver_id == driver_id)
        q = q.order_by(RouteRow.shift.desc(), RouteRow.updated_at.desc()).limit(limit)
        return list((await self.session.scalars(q)).all())
