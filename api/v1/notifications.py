"""In-app notifications of the caller, the organization's notification rules, a delivery's preferences."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Query

from api.deps import Admin, Reader, SessionDep, Writer
from api.http.pagination import Page, PageDep
from api.schemas.notifications import (
    DeliveryPrefsIn,
    DeliveryPrefsOut,
    NotificationOut,
    NotificationSettingsIn,
    NotificationSettingsOut,
)
from api.services import notifications as service
from api.v1 import PREFIX

router = APIRouter(prefix=f"{PREFIX}/notifications", tags=["notifications"])


@router.get("", response_model=Page[NotificationOut], summary="The caller's in-app notifications")
async def list_notifications(
    user: Reader,
    session: SessionDep,
    page: PageDep,
    unread: Annotated[bool | None, Query(description="only unread (true) or read (false) ones")] = None,
) -> Page[NotificationOut]:
    return await service.inbox(session, user, page, unread)


@router.post("/{notification_id}/read", response_model=NotificationOut)
async def mark_read(notification_id: uuid.UUID, user: Reader, session: SessionDep) -> NotificationOut:
    return await service.mark_read(session, user, notification_id)


@router.get("/settings", response_model=NotificationSettingsOut)
async def read_settings(user: Admin, session: SessionDep) -> NotificationSettingsOut:
    return await service.read_settings(session, user.organization_id)


@router.put("/settings", response_model=NotificationSettingsOut)
async def replace_settings(
    body: NotificationSettingsIn, user: Admin, session: SessionDep
) -> NotificationSettingsOut:
    return await service.replace_settings(session, user.organization_id, body)


@router.get("/deliveries/{delivery_id}", response_model=DeliveryPrefsOut)
async def read_delivery_prefs(delivery_id: uuid.UUID, user: Writer, session: SessionDep) -> DeliveryPrefsOut:
    return await service.read_prefs(session, user.organization_id, delivery_id)


@router.put("/deliveries/{delivery_id}", response_model=DeliveryPrefsOut)
async def replace_delivery_prefs(
    delivery_id: uuid.UUID, body: DeliveryPrefsIn, user: Writer, session: SessionDep
) -> DeliveryPrefsOut:
    """The customer's choice for this delivery; applies to events from now on."""
    return await service.replace_prefs(session, user.organization_id, delivery_id, body)
