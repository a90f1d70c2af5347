from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends

from api.deps import CurrentUser, require_roles
from api.schemas.fleet import DriverCreate, DriverOut, DriverUpdate
from api.services.fleet import DRIVERS
from api.v1 import PREFIX
from api.v1.crud_routes import Resource, add_crud_routes
from domain.roles import FLEET_WRITERS, Role

router = APIRouter(prefix=f"{PREFIX}/drivers", tags=["drivers"])
# Driver records carry contact details of other people: drivers themselves do not list them.
Reader = Annotated[CurrentUser, Depends(require_roles(Role.ADMIN, Role.DISPATCHER, Role.VIEWER))]
Writer = Annotated[CurrentUser, Depends(require_roles(*FLEET_WRITERS))]

add_crud_routes(router, Resource("driver", DRIVERS, DriverCreate, DriverUpdate, DriverOut), Reader, Writer)
