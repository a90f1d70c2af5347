"""Depots, vehicles and drivers."""

from __future__ import annotations

import uuid

from sqlalchemy import func, select

from db.models import Depot, Driver, Vehicle
from db.repositories.base import OrgScopedRepository


class DepotRepository(OrgScopedRepository[Depot]):
    model = Depot

    async def in_use(self, depot_id: uuid.UUID) -> int:
        stmt = (
            select(func.count())
            .select_from(Vehicle)
            .where(Vehicle.organization_id == self.organization_id, Vehicle.home_depot_id == depot_id)
        )
        return int((await self.session.execute(stmt)).scalar_one())


class VehicleRepository(OrgScopedRepository[Vehicle]):
    model = Vehicle


class DriverRepository(OrgScopedRepository[Driver]):
    model = Driver

    async def by_user(self, user_id: uuid.UUID) -> Driver | None:
        return (await self.session.scalars(self._scoped().where(Driver.user_id == user_id))).one_or_none()
