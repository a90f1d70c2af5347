"""An organization's notification rules and a delivery's notification preferences (one row each,
made on first write)."""

from __future__ import annotations

import uuid

from sqlalchemy.ext.asyncio import AsyncSession

from db.models import DeliveryNotificationPrefs, NotificationSettingsRow


async def organization_settings(session: AsyncSession, org: uuid.UUID) -> NotificationSettingsRow | None:
    return await session.get(NotificationSettingsRow, org)


async def organization_settings_for_update(session: AsyncSession, org: uuid.UUID) -> NotificationSettingsRow:
    """The organization's row, added to the session if it has none yet (the caller sets and commits)."""
    row = await organization_settings(session, org)
    if row is None:
        row = NotificationSettingsRow(organization_id=org)
        session.add(row)
    return row


async def delivery_prefs(session: AsyncSession, delivery_id: uuid.UUID) -> DeliveryNotificationPrefs | None:
    return await session.get(DeliveryNotificationPrefs, delivery_id)


async def delivery_prefs_for_update(
    session: AsyncSession, org: uuid.UUID, delivery_id: uuid.UUID
) -> DeliveryNotificationPrefs:
    """The delivery's row, added to the session if it has none yet (the caller sets and commits)."""
    row = await delivery_prefs(session, delivery_id)
    if row is None:
        row = DeliveryNotificationPrefs(delivery_id=delivery_id, organization_id=org)
        session.add(row)
    return row
