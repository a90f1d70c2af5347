"""Webhook subscriptions of an organization, their recorded deliveries and each delivery's attempts."""

from __future__ import annotations

import uuid

from sqlalchemy import select

from db.models import WebhookAttempt, WebhookDelivery, WebhookSubscription
from db.repositories.base import OrgScopedRepository
from db.repositories.listing import page_rows


class WebhookRepository(OrgScopedRepository[WebhookSubscription]):
    model = WebhookSubscription

    async def delivery(self, subscription_id: uuid.UUID, delivery_id: uuid.UUID) -> WebhookDelivery | None:
        """A recorded delivery of the subscription (the subscription is the caller's to check)."""
        found = await self.session.get(WebhookDelivery, delivery_id)
        return found if found is not None and found.subscription_id == subscription_id else None

    async def deliveries(
        self, subscription_id: uuid.UUID, status: str | None, *, after: uuid.UUID | None, limit: int
    ) -> list[WebhookDelivery]:
        """A page of the subscription's deliveries in id order, of one status if given."""
        stmt = select(WebhookDelivery).where(WebhookDelivery.subscription_id == subscription_id)
        if status:
            stmt = stmt.where(WebhookDelivery.status == status)
        return await page_rows(self.session, stmt, WebhookDelivery, after, limit)

    async def attempts(self, delivery_id: uuid.UUID) -> list[WebhookAttempt]:
        stmt = select(WebhookAttempt).where(WebhookAttempt.webhook_delivery_id == delivery_id)
        return list(await self.session.scalars(stmt.order_by(WebhookAttempt.id)))
