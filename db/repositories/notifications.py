"""What notification planning and sending read and write: messages (`notifications`), webhook
deliveries and their attempts, the organization's notification settings and staff, a delivery's
notification preferences and its driver. Rows are keyed by event id, so planning twice plans once."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from db.models import (
    DeliveryNotificationPrefs,
    Driver,
    NotificationRow,
    NotificationSettingsRow,
    User,
    WebhookAttempt,
    WebhookDelivery,
    WebhookSubscription,
)
from db.upsert import insert_ignoring_into
from domain.ids import uuid7

# Messages --------------------------------------------------------------------------------------


async def add_message(session: AsyncSession, **values: Any) -> None:
    """A pending message, unless the event already has one for that channel and recipient."""
    await session.execute(
        insert_ignoring_into(session, NotificationRow, ["event_id", "channel", "recipient"]).values(
            id=uuid7(), status="pending", **values
        )
    )


async def message(session: AsyncSession, message_id: uuid.UUID) -> NotificationRow | None:
    return await session.get(NotificationRow, message_id)


async def mark_message_sent(session: AsyncSession, message_id: uuid.UUID, at: datetime) -> None:
    await session.execute(
        update(NotificationRow)
        .where(NotificationRow.id == message_id)
        .values(status="sent", sent_at=at, error=None)
    )


async def mark_message_failed(session: AsyncSession, message_id: uuid.UUID, reason: str) -> None:
    """Failed, unless it was sent meanwhile."""
    await session.execute(
        update(NotificationRow)
        .where(NotificationRow.id == message_id, NotificationRow.status != "sent")
        .values(status="failed", error=reason[:500])
    )


async def messages_of_event(session: AsyncSession, event_id: str) -> Sequence[NotificationRow]:
    rows = await session.scalars(
        select(NotificationRow).where(NotificationRow.event_id == event_id).order_by(NotificationRow.id)
    )
    return rows.all()


# Webhooks --------------------------------------------------------------------------------------


async def active_subscriptions(
    session: AsyncSession, organization_id: uuid.UUID
) -> Sequence[WebhookSubscription]:
    subs = await session.scalars(
        select(WebhookSubscription).where(
            WebhookSubscription.organization_id == organization_id,
            WebhookSubscription.active.is_(True),
        )
    )
    return subs.all()


async def add_webhook_delivery(session: AsyncSession, sub: WebhookSubscription, **values: Any) -> None:
    """A pending delivery of the event to the subscription, unless it has one."""
    await session.execute(
        insert_ignoring_into(session, WebhookDelivery, ["subscription_id", "event_id"]).values(
            id=uuid7(),
            organization_id=sub.organization_id,
            subscription_id=sub.id,
            status="pending",
            attempts=0,
            **values,
        )
    )


async def webhook_deliveries_of_event(session: AsyncSession, event_id: str) -> Sequence[WebhookDelivery]:
    rows = await session.scalars(
        select(WebhookDelivery).where(WebhookDelivery.event_id == event_id).order_by(WebhookDelivery.id)
    )
    return rows.all()


async def webhook_delivery(
    session: AsyncSession, delivery_id: uuid.UUID
) -> tuple[WebhookDelivery | None, WebhookSubscription | None]:
    """The webhook delivery and its subscription (either None once deleted)."""
    wd = await session.get(WebhookDelivery, delivery_id)
    sub = await session.get(WebhookSubscription, wd.subscription_id) if wd else None
    return wd, sub


def add_attempt(session: AsyncSession, **values: Any) -> None:
    session.add(WebhookAttempt(**values))


async def disable_subscription(session: AsyncSession, sub_id: uuid.UUID, at: datetime, reason: str) -> bool:
    """Disable the subscription if it is active; True if this call did. Conditional: of several
    lanes failing at once, exactly one disables (and alerts)."""
    flipped = await session.execute(
        update(WebhookSubscription)
        .where(WebhookSubscription.id == sub_id, WebhookSubscription.active.is_(True))
        .values(active=False, disabled_at=at, disabled_reason=reason)
        .execution_options(synchronize_session=False)
    )
    return bool(flipped.rowcount)  # type: ignore[attr-defined]


async def mark_webhook_failed(session: AsyncSession, delivery_id: uuid.UUID) -> None:
    """Failed, unless it has an outcome already."""
    await session.execute(
        update(WebhookDelivery)
        .where(WebhookDelivery.id == delivery_id, WebhookDelivery.status == "pending")
        .values(status="failed")
    )


async def subscription(session: AsyncSession, sub_id: uuid.UUID) -> WebhookSubscription | None:
    return await session.get(WebhookSubscription, sub_id)


# Who is told -----------------------------------------------------------------------------------


async def notification_settings(
    session: AsyncSession, organization_id: uuid.UUID
) -> NotificationSettingsRow | None:
    return await session.get(NotificationSettingsRow, organization_id)


async def delivery_prefs(session: AsyncSession, delivery_id: uuid.UUID) -> DeliveryNotificationPrefs | None:
    return await session.get(DeliveryNotificationPrefs, delivery_id)


async def active_users(
    session: AsyncSession, organization_id: uuid.UUID, roles: Sequence[str]
) -> Sequence[User]:
    users = await session.scalars(
        select(User).where(
            User.organization_id == organization_id, User.active.is_(True), User.role.in_(roles)
        )
    )
    return users.all()


async def driver_and_user(
    session: AsyncSession, organization_id: uuid.UUID, driver_id: uuid.UUID
) -> tuple[Driver | None, User | None]:
    """The organization's driver and the user it signs in as (None if it is not the organization's)."""
    driver = await session.get(Driver, driver_id)
    if driver is None or driver.organization_id != organization_id:
        return None, None
    user = await session.get(User, driver.user_id) if driver.user_id else None
    return driver, user
