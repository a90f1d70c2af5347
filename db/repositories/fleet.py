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

    async def search(
        self, *, depot_id: uuid.UUID | None, active: bool | None, after: uuid.UUID | None, limit: int
    ) -> list[Vehicle]:
        """A page of the organization's vehicles, of one home depot and activity state if given."""
        filters = []
        if depot_id is not None:
            filters.append(Vehicle.home_depot_id == depot_id)
        if active is not None:
            filters.append(Vehicle.active == active)
        return await self.list(after=after, limit=limit, filters=filters)


class DriverRepository(OrgScopedRepository[Driver]):
    model = Driver

    async def by_user(self, user_id: uuid.UUID) -> Driver | None:
        return (await self.session.scalars(self._scoped().where(Driver.user_id == user_id))).one_or_none()

    async def usual_for_vehicle(self, vehicle_id: uuid.UUID) -> Driver | None:
        """The vehicle's driver by default: the first active one whose vehicle it is."""
        stmt = self._scoped().where(Driver.vehicle_id == vehicle_id, Driver.active.is_(True))
        return (await self.session.scalars(stmt.order_by(Driver.id).limit(1))).first()
