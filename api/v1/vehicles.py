from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Query

from api.deps import Reader, SessionDep, Writer
from api.http.pagination import Page, PageDep
from api.schemas.fleet import VehicleCreate, VehicleOut, VehicleUpdate
from api.services.fleet import VEHICLES
from api.services.fleet import list_vehicles as vehicles_page
from api.v1 import PREFIX
from api.v1.crud_routes import ROUTES, Resource, add_crud_routes

router = APIRouter(prefix=f"{PREFIX}/vehicles", tags=["vehicles"])


@router.get("", response_model=Page[VehicleOut])
async def list_vehicles(
    user: Reader,
    session: SessionDep,
    page: PageDep,
    depot_id: Annotated[uuid.UUID | None, Query(description="only vehicles based at this depot")] = None,
    active: Annotated[bool | None, Query()] = None,
) -> Page[VehicleOut]:
    return await vehicles_page(session, user.organization_id, page, depot_id, active)


add_crud_routes(
    router,
    Resource("vehicle", VEHICLES, VehicleCreate, VehicleUpdate, VehicleOut),
    Reader,
    Writer,
    routes=[r for r in ROUTES if r != "list"],
)
