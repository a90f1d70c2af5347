from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Response
from sqlalchemy.ext.asyncio import AsyncSession

from api.deps import CurrentUser, SessionDep, require_roles
from api.errors import ProblemError
from api.http.pagination import Page, PageDep, make_page
from api.schemas.fleet import DriverCreate, DriverOut, DriverUpdate
from api.v1 import PREFIX
from api.services.crud import add_or_conflict, changes, fetch, flush_or_conflict, require_reference
from db.models import Driver
from db.repositories.accounts import UserRepository
from db.repositories.fleet import DriverRepository, VehicleRepository
from domain.roles import FLEET_WRITERS, Role

router = APIRouter(prefix=f"{PREFIX}/drivers", tags=["drivers"])
# Driver records carry contact details of other people: drivers themselves do not list them.
Reader = Annotated[CurrentUser, Depends(require_roles(Role.ADMIN, Role.DISPATCHER, Role.VIEWER))]
Writer = Annotated[CurrentUser, Depends(require_roles(*FLEET_WRITERS))]


async def _check_refs(session: AsyncSession, org: uuid.UUID, values: dict[str, Any]) -> None:
    await require_reference(VehicleRepository(session, org), values.get("vehicle_id"), "vehicle_id")
    if (user_id := values.get("user_id")) is not None:
        linked = await UserRepository(session, org).get(user_id)
        if linked is None:
            await require_reference(UserRepository(session, org), user_id, "user_id")
        elif linked.role != Role.DRIVER.value:
            raise ProblemError(
                422, "invalid_reference", "user_id: the linked user must have the role 'driver'"
            )


def _apply(driver: Driver, values: dict[str, Any]) -> None:
    for field, value in values.items():
        if value is None and field in ("name", "skills", "active"):
            raise ProblemError(422, "validation_error", f"{field} cannot be null")
        setattr(driver, field, sorted(set(value)) if field == "skills" else value)


@router.get("", response_model=Page[DriverOut])
async def list_drivers(user: Reader, session: SessionDep, page: PageDep) -> Page[DriverOut]:
    rows = await DriverRepository(session, user.organization_id).list(after=page.after, limit=page.limit + 1)
    return make_page(rows, page, DriverOut.model_validate)


@router.post("", status_code=201, response_model=DriverOut)
async def create_driver(body: DriverCreate, user: Writer, session: SessionDep) -> DriverOut:
    values = body.model_dump()
    await _check_refs(session, user.organization_id, values)
    driver = Driver(organization_id=user.organization_id)
    _apply(driver, values)
    await add_or_conflict(DriverRepository(session, user.organization_id), driver, "driver")
    await session.commit()
    return DriverOut.model_validate(driver)


@router.get("/{driver_id}", response_model=DriverOut)
async def get_driver(driver_id: uuid.UUID, user: Reader, session: SessionDep) -> DriverOut:
    return DriverOut.model_validate(
        await fetch(DriverRepository(session, user.organization_id), driver_id, "driver")
    )


@router.patch("/{driver_id}", response_model=DriverOut)
async def update_driver(
    driver_id: uuid.UUID, body: DriverUpdate, user: Writer, session: SessionDep
) -> DriverOut:
    repo = DriverRepository(session, user.organization_id)
    driver: Driver = await fetch(repo, driver_id, "driver")
    values = changes(body)
    await _check_refs(session, user.organization_id, values)
    _apply(driver, values)
    await flush_or_conflict(repo, "driver")
    await session.commit()
    return DriverOut.model_validate(driver)


@router.delete("/{driver_id}", status_code=204)
async def delete_driver(driver_id: uuid.UUID, user: Writer, session: SessionDep) -> Response:
    repo = DriverRepository(session, user.organization_id)
    await repo.delete(await fetch(repo, driver_id, "driver"))
    await session.commit()
    return Response(status_code=204)
