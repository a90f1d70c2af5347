from __future__ import annotations

from fastapi import APIRouter

from api.deps import Staff, Writer
from api.schemas.fleet import DriverCreate, DriverOut, DriverUpdate
from api.services.fleet import DRIVERS
from api.v1 import PREFIX
from api.v1.crud_routes import Resource, add_crud_routes

router = APIRouter(prefix=f"{PREFIX}/drivers", tags=["drivers"])
# Driver records carry contact details of other people: drivers themselves do not list them (Staff).
add_crud_routes(router, Resource("driver", DRIVERS, DriverCreate, DriverUpdate, DriverOut), Staff, Writer)
