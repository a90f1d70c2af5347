"""In-app notifications of the caller, the organization's notification rules, a delivery's
notification preferences."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from sqlalchemy.ext.asyncio import AsyncSession

from activities.notifications.rules import RulesError, effective_rules, validate_rules
from api.deps import CurrentUser
from api.errors import ProblemError, not_found
from api.http.pagination import Page, PageParams, make_page
from api.schemas.notifications import (
    DeliveryPrefsIn,
    DeliveryPrefsOut,
    NotificationOut,
    NotificationSettingsIn,
    NotificationSettingsOut,
)
from api.services.deliveries import load_row
from db.models import DeliveryNotificationPrefs, NotificationSettingsRow
from db.repositories import notification_settings as stored
from db.repositories.inbox import InboxRepository


async def inbox(
    session: AsyncSession, user: CurrentUser, page: PageParams, unread: bool | None
) -> Page[NotificationOut]:
    rows = await InboxRepository(session, user.id).page(unread, after=page.after, limit=page.limit + 1)
    return make_page(rows, page, NotificationOut.model_validate)


async def mark_read(session: AsyncSession, user: CurrentUser, notification_id: uuid.UUID) -> NotificationOut:
    row = await InboxRepository(session, user.id).get(notification_id)
    if row is None:
        raise not_found("notification", notification_id)
    row.read_at = row.read_at or datetime.now(UTC)
    await session.commit()
    return NotificationOut.model_validate(row)


def _settings_out(row: NotificationSettingsRow | None) -> NotificationSettingsOut:
    overrides = row.rules if row else {}
    return NotificationSettingsOut(
        rules=effective_rules(overrides), overrides=overrides, locale=row.locale if row else "en"
    )


async def read_settings(session: AsyncSession, org: uuid.UUID) -> NotificationSettingsOut:
    return _settings_out(await stored.organization_settings(session, org))


async def replace_settings(
    session: AsyncSession, org: uuid.UUID, body: NotificationSettingsIn
) -> NotificationSettingsOut:
    try:
        rules = validate_rules(body.rules)
    except RulesError as exc:
        raise ProblemError(422, "invalid_rules", str(exc)) from None
    row = await stored.organization_settings_for_update(session, org)
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


async def read_prefs(session: AsyncSession, org: uuid.UUID, delivery_id: uuid.UUID) -> DeliveryPrefsOut:
    await load_row(session, org, delivery_id)
    return _prefs_out(delivery_id, await stored.delivery_prefs(session, delivery_id))


async def replace_prefs(
    session: AsyncSession, org: uuid.UUID, delivery_id: uuid.UUID, body: DeliveryPrefsIn
) -> DeliveryPrefsOut:
    """The customer's choice for this delivery; applies to events from now on."""
    await load_row(session, org, delivery_id)
    row = await stored.delivery_prefs_for_update(session, org, delivery_id)
    row.opted_out, row.locale = body.opted_out, body.locale
    row.channels = list(body.channels) if body.channels is not None else None
    await session.commit()
    return _prefs_out(delivery_id, row)
