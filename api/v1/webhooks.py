"""Outbound webhook subscriptions, their recorded deliveries (attempts included) and replay."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Query, Response

from api.deps import Admin, ResourcesDep, SessionDep, TemporalDep
from api.http.pagination import Page, PageDep
from api.schemas.webhooks import WebhookCreate, WebhookCreated, WebhookDeliveryOut, WebhookOut, WebhookUpdate
from api.services import webhooks as service
from api.v1 import PREFIX

router = APIRouter(prefix=f"{PREFIX}/webhooks", tags=["webhooks"])


@router.post("", status_code=201, response_model=WebhookCreated)
async def create_webhook(
    body: WebhookCreate, user: Admin, session: SessionDep, resources: ResourcesDep
) -> WebhookCreated:
    return await service.create(session, resources.settings, user.organization_id, body)


@router.get("", response_model=Page[WebhookOut])
async def list_webhooks(user: Admin, session: SessionDep, page: PageDep) -> Page[WebhookOut]:
    return await service.page(session, user.organization_id, page)


@router.get("/{webhook_id}", response_model=WebhookOut)
async def read_webhook(webhook_id: uuid.UUID, user: Admin, session: SessionDep) -> WebhookOut:
    return WebhookOut.model_validate(await service.own(session, user.organization_id, webhook_id))


@router.patch("/{webhook_id}", response_model=WebhookOut)
async def update_webhook(
    webhook_id: uuid.UUID, body: WebhookUpdate, user: Admin, session: SessionDep, resources: ResourcesDep
) -> WebhookOut:
    return await service.update(session, resources.settings, user.organization_id, webhook_id, body)


@router.delete("/{webhook_id}", status_code=204)
async def delete_webhook(webhook_id: uuid.UUID, user: Admin, session: SessionDep) -> Response:
    await service.delete(session, user.organization_id, webhook_id)
    return Response(status_code=204)


@router.get("/{webhook_id}/deliveries", response_model=Page[WebhookDeliveryOut])
async def list_webhook_deliveries(
    webhook_id: uuid.UUID,
    user: Admin,
    session: SessionDep,
    page: PageDep,
    status: Annotated[str | None, Query(description="pending, succeeded, failed or skipped")] = None,
) -> Page[WebhookDeliveryOut]:
    return await service.deliveries(session, user.organization_id, webhook_id, page, status)


@router.get("/{webhook_id}/deliveries/{delivery_id}", response_model=WebhookDeliveryOut)
async def read_webhook_delivery(
    webhook_id: uuid.UUID, delivery_id: uuid.UUID, user: Admin, session: SessionDep
) -> WebhookDeliveryOut:
    return await service.read_delivery(session, user.organization_id, webhook_id, delivery_id)


@router.post(
    "/{webhook_id}/deliveries/{delivery_id}/replay", status_code=202, response_model=WebhookDeliveryOut
)
async def replay_webhook_delivery(
    webhook_id: uuid.UUID,
    delivery_id: uuid.UUID,
    user: Admin,
    session: SessionDep,
    client: TemporalDep,
    resources: ResourcesDep,
) -> WebhookDeliveryOut:
    """Send the recorded event again (same event id and body, fresh signature), with retries."""
    return await service.replay(
        session, client, resources.settings, user.organization_id, webhook_id, delivery_id
    )
