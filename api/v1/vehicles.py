from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Response

from api.deps import CurrentUser, SessionDep, require_roles
from api.errors import ProblemError
from api.http.pagination import Page, PageDep, make_page
from api.schemas.fleet import CapacityOut, ShiftOut, VehicleCreate, VehicleOut, VehicleProfile, VehicleUpdate
from api.v1 import PREFIX
from api.services.crud import add_or_conflict, changes, fetch, flush_or_conflict, require_reference
from db.models import Vehicle
from db.repositories.fleet import DepotRepository, VehicleRepository
from domain.roles import ALL_ROLES, FLEET_WRITERS

router = APIRouter(prefix=f"{PREFIX}/vehicles", tags=["vehicles"])
Reader = Annotated[CurrentUser, Depends(require_roles(*ALL_ROLES))]
Writer = Annotated[CurrentUser, Depends(require_roles(*FLEET_WRITERS))]


def to_out(v: Vehicle) -> VehicleOut:
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


def _apply(vehicle: Vehicle, values: dict[str, Any]) -> None:
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
        elif value is None and field in ("name", "profile", "active"):
            raise ProblemError(422, "validation_error", f"{field} cannot be null")
        else:
            setattr(vehicle, field, value)


@router.get("", response_model=Page[VehicleOut])
async def list_vehicles(
    user: Reader,
    session: SessionDep,
    page: PageDep,
    depot_id: Annotated[uuid.UUID | None, Query(description="only vehicles based at this depot")] = None,
    active: Annotated[bool | None, Query()] = None,
) -> Page[VehicleOut]:
    filters = []
    if depot_id is not None:
        filters.append(Vehicle.home_depot_id == depot_id)
    if active is not None:
        filters.append(Vehicle.active == active)
    repo = VehicleRepository(session, user.organization_id)
    rows = await repo.list(after=page.after, limit=page.limit + 1, filters=filters)
    return make_page(rows, page, to_out)


@router.post("", status_code=201, response_model=VehicleOut)
async def create_vehicle(body: VehicleCreate, user: Writer, session: SessionDep) -> VehicleOut:
    await require_reference(
        DepotRepository(session, user.organization_id), body.home_depot_id, "home_depot_id"
    )
    vehicle = Vehicle(organization_id=user.organization_id)
    _apply(vehicle, body.model_dump())
    await add_or_conflict(VehicleRepository(session, user.organization_id), vehicle, "vehicle")
    await session.commit()
    return to_out(vehicle)


@router.get("/{vehicle_id}", response_model=VehicleOut)
async def get_vehicle(vehicle_id: uuid.UUID, user: Reader, session: SessionDep) -> VehicleOut:
    return to_out(await fetch(VehicleRepository(session, user.organization_id), vehicle_id, "vehicle"))


@router.patch("/{vehicle_id}", response_model=VehicleOut)
async def update_vehicle(
    vehicle_id: uuid.UUID, body: VehicleUpdate, user: Writer, session: SessionDep
) -> VehicleOut:
    repo = VehicleRepository(session, user.organization_id)
    vehicle: Vehicle = await fetch(repo, vehicle_id, "vehicle")
    values = changes(body)
    await require_reference(
        DepotRepository(session, user.organization_id), values.get("home_depot_id"), "home_depot_id"
    )
    _apply(vehicle, values)
    await flush_or_conflict(repo, "vehicle")
    await session.commit()
    return to_out(vehicle)


@router.delete("/{vehicle_id}", status_code=204)
async def delete_vehicle(vehicle_id: uuid.UUID, user: Writer, session: SessionDep) -> Response:
    repo = VehicleRepository(session, user.organization_id)
    await repo.delete(await fetch(repo, vehicle_id, "vehicle"))
    await session.commit()
    return Response(status_code=204)
