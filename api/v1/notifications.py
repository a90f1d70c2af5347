"""In-app notifications of the caller, the organization's notification rules, a delivery's preferences."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Query
from sqlalchemy import select

from activities.notifications.rules import RulesError, effective_rules, validate_rules
from api.deps import CurrentUser, SessionDep, require_roles
from api.errors import ProblemError, not_found
from api.http.pagination import Page, PageDep, page_of
from api.schemas.notifications import (
    DeliveryPrefsIn,
    DeliveryPrefsOut,
    NotificationOut,
    NotificationSettingsIn,
    NotificationSettingsOut,
)
from api.services.deliveries import load_row
from api.v1 import PREFIX
from db.models import DeliveryNotificationPrefs, NotificationRow, NotificationSettingsRow
from domain.roles import ALL_ROLES, FLEET_WRITERS, Role

router = APIRouter(prefix=f"{PREFIX}/notifications", tags=["notifications"])
Reader = Annotated[CurrentUser, Depends(require_roles(*ALL_ROLES))]
Writer = Annotated[CurrentUser, Depends(require_roles(*FLEET_WRITERS))]
Admin = Annotated[CurrentUser, Depends(require_roles(Role.ADMIN))]


def to_out(n: NotificationRow) -> NotificationOut:
    return NotificationOut(
        id=n.id,
        event=n.event,
        channel=n.channel,
        delivery_id=n.delivery_id,
        subject=n.subject,
        body=n.body,
        status=n.status,
        created_at=n.created_at,
        read_at=n.read_at,
    )


@router.get("", response_model=Page[NotificationOut], summary="The caller's in-app notifications")
async def list_notifications(
    user: Reader,
    session: SessionDep,
    page: PageDep,
    unread: Annotated[bool | None, Query(description="only unread (true) or read (false) ones")] = None,
) -> Page[NotificationOut]:
    stmt = select(NotificationRow).where(
        NotificationRow.user_id == user.id, NotificationRow.channel == "in_app"
    )
    if unread is not None:
        stmt = stmt.where(
            NotificationRow.read_at.is_(None) if unread else NotificationRow.read_at.is_not(None)
        )
    return await page_of(session, stmt, NotificationRow, page, to_out)


@router.post("/{notification_id}/read", response_model=NotificationOut)
async def mark_read(notification_id: uuid.UUID, user: Reader, session: SessionDep) -> NotificationOut:
    row = await session.get(NotificationRow, notification_id)
    if row is None or row.user_id != user.id or row.channel != "in_app":
        raise not_found("notification", notification_id)
    row.read_at = row.read_at or datetime.now(UTC)
    await session.commit()
    return to_out(row)


def _settings_out(row: NotificationSettingsRow | None) -> NotificationSettingsOut:
    overrides = row.rules if row else {}
    return NotificationSettingsOut(
        rules=effective_rules(overrides), overrides=overrides, locale=row.locale if row else "en"
    )


@router.get("/settings", response_model=NotificationSettingsOut)
async def read_settings(user: Admin, session: SessionDep) -> NotificationSettingsOut:
    return _settings_out(await session.get(NotificationSettingsRow, user.organization_id))


@router.put("/settings", response_model=NotificationSettingsOut)
async def replace_settings(
    body: NotificationSettingsIn, user: Admin, session: SessionDep
) -> NotificationSettingsOut:
    try:
        rules = validate_rules(body.rules)
    except RulesError as exc:
        raise ProblemError(422, "invalid_rules", str(exc)) from None
    row = await session.get(NotificationSettingsRow, user.organization_id)
    if row is None:
        row = NotificationSettingsRow(organization_id=user.organization_id)
        session.add(row)
    row.rules, row.locale = rules, body.locale
    await session.commit()
    return _settings_out(row)


def _prefs_out(delivery_id: uuid.UUID, row: DeliveryNotificationPrefs | None) -> DeliveryPrefsOut:
    return DeliveryPrefsOut(
        delivery_id=delivery_id,
        opted_out=row.opted_out if row else False,
        channels=row.channels if row else None,
        locale=row.locale if row else None,
    )


@router.get("/deliveries/{delivery_id}", response_model=DeliveryPrefsOut)
async def read_delivery_prefs(delivery_id: uuid.UUID, user: Writer, session: SessionDep) -> DeliveryPrefsOut:
    await load_row(session, user.organization_id, delivery_id)
    return _prefs_out(delivery_id, await session.get(DeliveryNotificationPrefs, delivery_id))


@router.put("/deliveries/{delivery_id}", response_model=DeliveryPrefsOut)
async def replace_delivery_prefs(
    delivery_id: uuid.UUID, body: DeliveryPrefsIn, user: Writer, session: SessionDep
) -> DeliveryPrefsOut:
    """The customer's choice for this delivery; applies to events from now on."""
    await load_row(session, user.organization_id, delivery_id)
    row = await session.get(DeliveryNotificationPrefs, delivery_id)
    if row is None:
        row = DeliveryNotificationPrefs(delivery_id=delivery_id, organization_id=user.organization_id)
        session.add(row)
    row.opted_out, row.locale = body.opted_out, body.locale
    row.channels = list(body.channels) if body.channels is not None else None
    await session.commit()
    return _prefs_out(delivery_id, row)
