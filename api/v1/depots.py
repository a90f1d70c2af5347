from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, Response

from api.deps import CurrentUser, SessionDep, require_roles
from api.errors import ProblemError
from api.http.pagination import Page, PageDep, make_page
from api.schemas.common import Coordinates
from api.schemas.fleet import DepotCreate, DepotOut, DepotUpdate
from api.v1 import PREFIX
from api.services.crud import add_or_conflict, changes, fetch, flush_or_conflict
from db.models import Depot
from db.repositories.fleet import DepotRepository
from domain.roles import ALL_ROLES, FLEET_WRITERS

router = APIRouter(prefix=f"{PREFIX}/depots", tags=["depots"])
Reader = Annotated[CurrentUser, Depends(require_roles(*ALL_ROLES))]
Writer = Annotated[CurrentUser, Depends(require_roles(*FLEET_WRITERS))]


def to_out(d: Depot) -> DepotOut:
    return DepotOut(
        id=d.id,
        name=d.name,
        address=d.address,
        location=Coordinates(lat=d.lat, lon=d.lon),
        timezone=d.timezone,
        created_at=d.created_at,
        updated_at=d.updated_at,
    )


@router.get("", response_model=Page[DepotOut])
async def list_depots(user: Reader, session: SessionDep, page: PageDep) -> Page[DepotOut]:
    rows = await DepotRepository(session, user.organization_id).list(after=page.after, limit=page.limit + 1)
    return make_page(rows, page, to_out)


@router.post("", status_code=201, response_model=DepotOut)
async def create_depot(body: DepotCreate, user: Writer, session: SessionDep) -> DepotOut:
    repo = DepotRepository(session, user.organization_id)
    depot = Depot(
        organization_id=user.organization_id,
        name=body.name,
        address=body.address,
        lat=body.location.lat,
        lon=body.location.lon,
        timezone=body.timezone,
    )
    await add_or_conflict(repo, depot, "depot")
    await session.commit()
    return to_out(depot)


@router.get("/{depot_id}", response_model=DepotOut)
async def get_depot(depot_id: uuid.UUID, user: Reader, session: SessionDep) -> DepotOut:
    return to_out(await fetch(DepotRepository(session, user.organization_id), depot_id, "depot"))


@router.patch("/{depot_id}", response_model=DepotOut)
async def update_depot(depot_id: uuid.UUID, body: DepotUpdate, user: Writer, session: SessionDep) -> DepotOut:
    repo = DepotRepository(session, user.organization_id)
    depot: Depot = await fetch(repo, depot_id, "depot")
    for field, value in changes(body).items():
        if value is None and field in ("name", "address", "location", "timezone"):
            raise ProblemError(422, "validation_error", f"{field} cannot be null")
        if field == "location":
            depot.lat, depot.lon = value["lat"], value["lon"]
        else:
            setattr(depot, field, value)
    await flush_or_conflict(repo, "depot")
    await session.commit()
    return to_out(depot)


@router.delete("/{depot_id}", status_code=204)
async def delete_depot(depot_id: uuid.UUID, user: Writer, session: SessionDep) -> Response:
    repo = DepotRepository(session, user.organization_id)
    depot = await fetch(repo, depot_id, "depot")
    if (count := await repo.in_use(depot_id)) > 0:
        raise ProblemError(
            409, "depot_in_use", f"{count} vehicle(s) have this depot as home; move them first"
        )
    await repo.delete(depot)
    await session.commit()
    return Response(status_code=204)
