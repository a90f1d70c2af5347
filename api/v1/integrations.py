"""Inbound integrations: API keys, orders from a shop or ERP, CSV upload of deliveries."""

from __future__ import annotations

import hashlib
import secrets
import uuid
from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Header, Response, UploadFile
from pydantic import ValidationError
from sqlalchemy import select

from api.deps import CurrentUser, ResourcesDep, SessionDep, TemporalDep, require_roles
from api.errors import ProblemError, not_found
from api.schemas.deliveries import DeliveryCreate, delivery_out
from api.schemas.integrations import (
    ApiKeyCreate,
    ApiKeyCreated,
    ApiKeyOut,
    ImportReport,
    OrderIn,
    OrderResult,
    order_to_delivery,
)
from api.services.deliveries import create_delivery
from api.services.delivery_import import ImportFileError, import_deliveries
from api.v1 import PREFIX
from db.models import ApiKey
from domain.roles import FLEET_WRITERS, Role

router = APIRouter(prefix=f"{PREFIX}/integrations", tags=["integrations"])
Admin = Annotated[CurrentUser, Depends(require_roles(Role.ADMIN))]
Writer = Annotated[CurrentUser, Depends(require_roles(*FLEET_WRITERS))]
KEY_PREFIX = "wbk_"


def _digest(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def _key_out(k: ApiKey) -> ApiKeyOut:
    return ApiKeyOut(
        id=k.id,
        name=k.name,
        prefix=k.prefix,
        active=k.active,
        created_at=k.created_at,
        last_used_at=k.last_used_at,
    )


async def api_key_caller(
    session: SessionDep, x_api_key: Annotated[str | None, Header(alias="X-Api-Key", max_length=200)] = None
) -> CurrentUser:
    """The integration behind an X-Api-Key, acting as a dispatcher of its organization."""
    if not x_api_key:
        raise ProblemError(401, "api_key_required", "send the organization's API key as X-Api-Key")
    key = (await session.scalars(select(ApiKey).where(ApiKey.key_sha256 == _digest(x_api_key)))).one_or_none()
    if key is None or not key.active:
        raise ProblemError(401, "invalid_api_key", "the API key is unknown or revoked")
    key.last_used_at = datetime.now(UTC)
    await session.commit()
    return CurrentUser(key.id, key.organization_id, Role.DISPATCHER, f"api-key:{key.prefix}", key.name)


Integration = Annotated[CurrentUser, Depends(api_key_caller)]


# API keys ------------------------------------------------------------------------------------


@router.post("/api-keys", status_code=201, response_model=ApiKeyCreated)
async def create_api_key(body: ApiKeyCreate, user: Admin, session: SessionDep) -> ApiKeyCreated:
    prefix = secrets.token_hex(4)
    key = f"{KEY_PREFIX}{prefix}_{secrets.token_urlsafe(32)}"
    row = ApiKey(organization_id=user.organization_id, name=body.name, prefix=prefix, key_sha256=_digest(key))
    session.add(row)
    await session.commit()
    return ApiKeyCreated(**_key_out(row).model_dump(), key=key)


@router.get("/api-keys", response_model=list[ApiKeyOut])
async def list_api_keys(user: Admin, session: SessionDep) -> list[ApiKeyOut]:
    rows = await session.scalars(
        select(ApiKey).where(ApiKey.organization_id == user.organization_id).order_by(ApiKey.id)
    )
    return [_key_out(k) for k in rows]


@router.delete("/api-keys/{key_id}", status_code=204)
async def revoke_api_key(key_id: uuid.UUID, user: Admin, session: SessionDep) -> Response:
    row = await session.get(ApiKey, key_id)
    if row is None or row.organization_id != user.organization_id:
        raise not_found("api_key", key_id)
    row.active = False
    await session.commit()
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
    try:
        body = DeliveryCreate.model_validate(order_to_delivery(order))
    except ValidationError as exc:
        raise ProblemError(422, "invalid_order", str(exc.errors()[0].get("msg", "invalid order"))) from None
    result = await create_delivery(body, caller, session, client, resources.settings, None)
    response.headers["Location"] = f"/api/v1/deliveries/{result.state.delivery_id}"
    if not result.created:
        response.status_code = 200
        response.headers["Idempotent-Replayed"] = "true"
    return OrderResult(created=result.created, delivery=delivery_out(result.state))


# CSV -----------------------------------------------------------------------------------------


@router.post("/deliveries:import", response_model=ImportReport, summary="Import deliveries from a CSV file")
async def upload_csv(
    file: UploadFile, user: Writer, client: TemporalDep, resources: ResourcesDep
) -> ImportReport:
    raw = await file.read(resources.settings.proof_max_bytes + 1)
    if len(raw) > resources.settings.proof_max_bytes:
        raise ProblemError(413, "payload_too_large", "the CSV file is too large")
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise ProblemError(422, "invalid_csv", "the file is not UTF-8 text") from None
    try:
        return await import_deliveries(text, user, resources, client)
    except ImportFileError as exc:
        raise ProblemError(422, "invalid_csv", str(exc)) from None
