"""Depots, vehicles and drivers: the fields a body sets on a row, the references it must name, and
each row's response."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from api.errors import ProblemError
from api.http.pagination import Page, PageParams, make_page
from api.schemas.common import Coordinates
from api.schemas.fleet import CapacityOut, DepotOut, DriverOut, ShiftOut, VehicleOut, VehicleProfile
from api.services.crud import Entity, Values, require_reference
from db.models import Depot, Driver, Vehicle
from db.repositories.accounts import UserRepository
from db.repositories.fleet import DepotRepository, DriverRepository, VehicleRepository
from domain.roles import Role


def _not_null(field: str, value: Any, fields: tuple[str, ...]) -> None:
    if value is None and field in fields:
        raise ProblemError(422, "validation_error", f"{field} cannot be null")


# Depots ------------------------------------------------------------------------------------


def depot_out(d: Depot) -> DepotOut:
    return DepotOut(
        id=d.id,
        name=d.name,
        address=d.address,
        location=Coordinates(lat=d.lat, lon=d.lon),
        timezone=d.timezone,
        created_at=d.created_at,
        updated_at=d.updated_at,
    )


def _apply_depot(depot: Depot, values: Values) -> None:
    for field, value in values.items():
        _not_null(field, value, ("name", "address", "location", "timezone"))
        if field == "location":
            depot.lat, depot.lon = value["lat"], value["lon"]
        else:
            setattr(depot, field, value)


async def _depot_unused(session: AsyncSession, org: uuid.UUID, depot: Depot) -> None:
    """Only a depot no vehicle has as its home may go (409 depot_in_use otherwise)."""
    if (count := await DepotRepository(session, org).in_use(depot.id)) > 0:
        raise ProblemError(
            409, "depot_in_use", f"{count} vehicle(s) have this depot as home; move them first"
        )


DEPOTS = Entity[Depot, DepotOut](
    "depot", DepotRepository, depot_out, _apply_depot, before_delete=_depot_unused
)


# Vehicles ----------------------------------------------------------------------------------


def vehicle_out(v: Vehicle) -> VehicleOut:
    shift = ShiftOut(start=v.shift_start, end=v.shift_end) if v.shift_start and v.shift_end else None
    return VehicleOut(
        id=v.id,
        name=v.name,
        plate=v.plate,
        profile=VehicleProfile(v.profile),
        capacity=CapacityOut(
            weight_kg=v.capacity_weight_kg, volume_m3=v.capacity_volume_m3, units=v.capacity_units
        ),
        skills=list(v.skills),
        home_depot_id=v.home_depot_id,
        shift=shift,
        active=v.active,
        created_at=v.created_at,
        updated_at=v.updated_at,
    )


def _apply_vehicle(vehicle: Vehicle, values: Values) -> None:
    for field, value in values.items():
        if field == "capacity":
            value = value or {}
            vehicle.capacity_weight_kg = value.get("weight_kg")
            vehicle.capacity_volume_m3 = value.get("volume_m3")
            vehicle.capacity_units = value.get("units")
        elif field == "shift":
            vehicle.shift_start = value["start"] if value else None
            vehicle.shift_end = value["end"] if value else None
        elif field == "skills":
            vehicle.skills = sorted(set(value or []))
        else:
            _not_null(field, value, ("name", "profile", "active"))
            setattr(vehicle, field, value)


async def _check_vehicle(session: AsyncSession, org: uuid.UUID, values: Values) -> None:
    await require_reference(DepotRepository(session, org), values.get("home_depot_id"), "home_depot_id")


VEHICLES = Entity[Vehicle, VehicleOut](
    "vehicle", VehicleRepository, vehicle_out, _apply_vehicle, _check_vehicle
)


async def list_vehicles(
    session: AsyncSession, org: uuid.UUID, page: PageParams, depot_id: uuid.UUID | None, active: bool | None
) -> Page[VehicleOut]:
    repo = VehicleRepository(session, org)
    rows = await repo.search(depot_id=depot_id, active=active, after=page.after, limit=page.limit + 1)
    return make_page(rows, page, vehicle_out)


# Drivers -----------------------------------------------------------------------------------


async def _check_driver(session: AsyncSession, org: uuid.UUID, values: Values) -> None:
    await require_reference(VehicleRepository(session, org), values.get("vehicle_id"), "vehicle_id")
    if (user_id := values.get("user_id")) is not None:
        linked = await UserRepository(session, org).get(user_id)
        if linked is None:
            await require_reference(UserRepository(session, org), user_id, "user_id")
        elif linked.role != Role.DRIVER.value:
            raise ProblemError(
                422, "invalid_reference", "user_id: the linked user must have the role 'driver'"
            )


def _apply_driver(driver: Driver, values: Values) -> None:
    for field, value in values.items():
        _not_null(field, value, ("name", "skills", "active"))
        setattr(driver, field, sorted(set(value)) if field == "skills" else value)


DRIVERS = Entity[Driver, DriverOut](
    "driver", DriverRepository, DriverOut.model_validate, _apply_driver, _check_driver
)
