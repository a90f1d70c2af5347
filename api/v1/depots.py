from __future__ import annotations

from fastapi import APIRouter

from api.deps import Reader, Writer
from api.schemas.fleet import DepotCreate, DepotOut, DepotUpdate
from api.services.fleet import DEPOTS
from api.v1 import PREFIX
from api.v1.crud_routes import Resource, add_crud_routes

router = APIRouter(prefix=f"{PREFIX}/depots", tags=["depots"])

add_crud_routes(router, Resource("depot", DEPOTS, DepotCreate, DepotUpdate, DepotOut), Reader, Writer)
