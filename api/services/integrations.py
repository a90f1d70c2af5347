"""Inbound integrations: API keys (only their SHA-256 is kept), the caller an X-Api-Key stands for,
and orders from a shop or ERP made into deliveries."""

from __future__ import annotations

import hashlib
import secrets
import uuid
from datetime import UTC, datetime

from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncSession

from api.deps import CurrentUser
from api.errors import ProblemError, not_found
from api.schemas.deliveries import DeliveryCreate
from api.schemas.integrations import ApiKeyCreated, ApiKeyOut, OrderIn, order_to_delivery
from db.repositories.api_keys import ApiKeyRepository, key_by_digest
from domain.roles import Role

KEY_PREFIX = "wbk_"


def _digest(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


async def key_caller(session: AsyncSession, key: str | None) -> CurrentUser:
    """The integration behind an X-Api-Key, acting as a dispatcher of its organization."""
    if not key:
        raise ProblemError(401, "api_key_required", "send the organization's API key as X-Api-Key")
    found = await key_by_digest(session, _digest(key))
    if found is None or not found.active:
        raise ProblemError(401, "invalid_api_key", "the API key is unknown or revoked")
    found.last_used_at = datetime.now(UTC)
    await session.commit()
    return CurrentUser(
        found.id, found.organization_id, Role.DISPATCHER, f"api-key:{found.prefix}", found.name
    )


async def create_key(session: AsyncSession, org: uuid.UUID, name: str) -> ApiKeyCreated:
    """A new key, shown this once."""
    prefix = secrets.token_hex(4)
    key = f"{KEY_PREFIX}{prefix}_{secrets.token_urlsafe(32)}"
    repo = ApiKeyRepository(session, org)
    row = repo.new(name=name, prefix=prefix, key_sha256=_digest(key))
    await repo.add(row)
    await session.commit()
    return ApiKeyCreated(**ApiKeyOut.model_validate(row).model_dump(), key=key)


async def list_keys(session: AsyncSession, org: uuid.UUID) -> list[ApiKeyOut]:
    return [ApiKeyOut.model_validate(k) for k in await ApiKeyRepository(session, org).all()]


async def revoke_key(session: AsyncSession, org: uuid.UUID, key_id: uuid.UUID) -> None:
    row = await ApiKeyRepository(session, org).owned(key_id)
    if row is None:
        raise not_found("api_key", key_id)
    row.active = False
    await session.commit()


def order_body(order: OrderIn) -> DeliveryCreate:
    """The delivery an order asks for (422 invalid_order if it makes no valid one)."""
    try:
        return DeliveryCreate.model_validate(order_to_delivery(order))
    except ValidationError as exc:
        raise ProblemError(422, "invalid_order", str(exc.errors()[0].get("msg", "invalid order"))) from None
