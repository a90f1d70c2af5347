"""Inbound integrations: API keys, orders from a shop or ERP, CSV upload of deliveries."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, Header, Response, UploadFile

from api.deps import Admin, CurrentUser, ResourcesDep, SessionDep, TemporalDep, Writer
from api.schemas.deliveries import delivery_out
from api.schemas.integrations import (
    ApiKeyCreate,
    ApiKeyCreated,
    ApiKeyOut,
    ImportReport,
    OrderIn,
    OrderResult,
)
from api.services import integrations as service
from api.services.deliveries import answer_created, create_delivery
from api.services.delivery_import import import_upload
from api.v1 import PREFIX

router = APIRouter(prefix=f"{PREFIX}/integrations", tags=["integrations"])


async def api_key_caller(
    session: SessionDep, x_api_key: Annotated[str | None, Header(alias="X-Api-Key", max_length=200)] = None
) -> CurrentUser:
    """The integration behind an X-Api-Key, acting as a dispatcher of its organization."""
    return await service.key_caller(session, x_api_key)


Integration = Annotated[CurrentUser, Depends(api_key_caller)]


# API keys ------------------------------------------------------------------------------------


@router.post("/api-keys", status_code=201, response_model=ApiKeyCreated)
async def create_api_key(body: ApiKeyCreate, user: Admin, session: SessionDep) -> ApiKeyCreated:
    return await service.create_key(session, user.organization_id, body.name)


@router.get("/api-keys", response_model=list[ApiKeyOut])
async def list_api_keys(user: Admin, session: SessionDep) -> list[ApiKeyOut]:
    return await service.list_keys(session, user.organization_id)


@router.delete("/api-keys/{key_id}", status_code=204)
async def revoke_api_key(key_id: uuid.UUID, user: Admin, session: SessionDep) -> Response:
    await service.revoke_key(session, user.organization_id, key_id)
    return Response(status_code=204)


# Orders --------------------------------------------------------------------------------------


@router.post(
    "/orders", status_code=201, response_model=OrderResult, summary="Create a delivery from an order"
)
async def receive_order(
    order: OrderIn,
    caller: Integration,
    session: SessionDep,
    client: TemporalDep,
    resources: ResourcesDep,
    response: Response,
) -> OrderResult:
    body = service.order_body(order)
    result = await create_delivery(body, caller, session, client, resources.settings, None)
    answer_created(response, result)
    return OrderResult(created=result.created, delivery=delivery_out(result.state))


# CSV -----------------------------------------------------------------------------------------


@router.post("/deliveries:import", response_model=ImportReport, summary="Import deliveries from a CSV file")
async def upload_csv(
    file: UploadFile, user: Writer, client: TemporalDep, resources: ResourcesDep
) -> ImportReport:
    return await import_upload(file, user, resources, client)
