from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends

from api.deps import CurrentUser, require_roles
from api.schemas.fleet import DepotCreate, DepotOut, DepotUpdate
from api.services.fleet import DEPOTS
from api.v1 import PREFIX
from api.v1.crud_routes import Resource, add_crud_routes
from domain.roles import ALL_ROLES, FLEET_WRITERS

router = APIRouter(prefix=f"{PREFIX}/depots", tags=["depots"])
Reader = Annotated[CurrentUser, Depends(require_roles(*ALL_ROLES))]
Writer = Annotated[CurrentUser, Depends(require_roles(*FLEET_WRITERS))]

add_crud_routes(router, Resource("depot", DEPOTS, DepotCreate, DepotUpdate, DepotOut), Reader, Writer)
