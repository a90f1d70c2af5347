"""The five routes of a plain organization-scoped resource (list, create, read, update, delete), made
once for depots, vehicles and drivers from their `Entity` (api/services/crud.py).

The endpoints are made here per resource, so their types are set on them when made: FastAPI reads
an endpoint's parameters from its signature, and `typed` puts the resource's body model, role
dependency and id parameter (named `<noun>_id` in the path and the OpenAPI document) there.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Collection
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import APIRouter, Path, Response
from pydantic import BaseModel

from api.deps import CurrentUser, SessionDep
from api.http.pagination import Page, PageDep
from api.services.crud import Entity, changes

ROUTES = ("list", "create", "read", "update", "delete")


def typed(endpoint: Callable[..., Any], **annotations: Any) -> Callable[..., Any]:
    """`endpoint` with these parameter types (objects, where its own are names in this module)."""
    endpoint.__annotations__.update(annotations)
    return endpoint


@dataclass(frozen=True)
class Resource:
    noun: str  # "depot": the id is `depot_id`, the endpoints `list_depots`, `create_depot`, ...
    entity: Entity[Any, Any]
    create: type[BaseModel]
    update: type[BaseModel]
    out: type[BaseModel]

    @property
    def plural(self) -> str:
        return f"{self.noun}s"


def add_crud_routes(
    router: APIRouter, r: Resource, reader: Any, writer: Any, routes: Collection[str] = ROUTES
) -> None:
    """Add the `routes` of resource `r` to `router`, in the order of ROUTES."""
    entity = r.entity
    ident = Annotated[uuid.UUID, Path(alias=f"{r.noun}_id")]
    by_id = f"/{{{r.noun}_id}}"

    async def list_(user: CurrentUser, session: SessionDep, page: PageDep) -> Any:
        return await entity.page(session, user.organization_id, page)

    async def create(body: Any, user: CurrentUser, session: SessionDep) -> Any:
        return await entity.create(session, user.organization_id, body.model_dump())

    async def read(ident: Any, user: CurrentUser, session: SessionDep) -> Any:
        return await entity.read(session, user.organization_id, ident)

    async def update(ident: Any, body: Any, user: CurrentUser, session: SessionDep) -> Any:
        return await entity.update(session, user.organization_id, ident, changes(body))

    async def delete(ident: Any, user: CurrentUser, session: SessionDep) -> Response:
        await entity.delete(session, user.organization_id, ident)
        return Response(status_code=204)

    made = {
        "list": ("", "GET", f"list_{r.plural}", typed(list_, user=reader), Page[r.out], None),  # type: ignore[name-defined]
        "create": ("", "POST", f"create_{r.noun}", typed(create, body=r.create, user=writer), r.out, 201),
        "read": (by_id, "GET", f"get_{r.noun}", typed(read, ident=ident, user=reader), r.out, None),
        "update": (
            by_id,
            "PATCH",
            f"update_{r.noun}",
            typed(update, ident=ident, body=r.update, user=writer),
            r.out,
            None,
        ),
        "delete": (by_id, "DELETE", f"delete_{r.noun}", typed(delete, ident=ident, user=writer), None, 204),
    }
    for route in (name for name in ROUTES if name in routes):
        path, method, name, endpoint, out, status = made[route]
        router.add_api_route(
            path, endpoint, methods=[method], name=name, response_model=out, status_code=status
        )
