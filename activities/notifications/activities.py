"""NotificationActivities: the steps of the per-delivery NotificationWorkflow. Each is idempotent:
plans are keyed by event id, a message or webhook already sent is not sent again."""

from __future__ import annotations

import smtplib
import uuid
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import httpx
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.interfaces import implements
from activities.interfaces.notifications import NotificationInterface
from activities.notifications.email import EmailSender
from activities.notifications.planner import STAFF, Planner, Recipient
from activities.notifications.sms import SmsSender
from activities.notifications.templates import render
from activities.notifications.webhooks import attempt_webhook
from db.models import NotificationRow
from db.repositories import notifications as repo
from domain import channels
from domain.notification_steps import DisabledAlert, SendFailure
from domain.notifications import WEBHOOK_DISABLED, EventPlan, NotificationEvent, Send

WEBHOOK_REFUSED = "WebhookRefused"  # ApplicationError type: the egress policy forbids the URL

if TYPE_CHECKING:
    from activities.resources import ActivityResources as Resources


class NotificationActivities(NotificationInterface):
    def __init__(self, resources: Resources) -> None:
        self._r = resources
        self._email = EmailSender(resources.settings)

    def _enabled_channels(self) -> set[str]:
        s = self._r.settings
        return {"in_app"} | ({"email"} if s.smtp_host else set()) | ({"sms"} if s.sms_provider_url else set())

    @implements(NotificationInterface.plan_event)
    async def plan_event(self, ev: NotificationEvent) -> EventPlan:
        async with self._r.sessionmaker() as session, session.begin():
            return await Planner(session, self._r.settings, self._enabled_channels()).plan(ev)

    @implements(NotificationInterface.send_message)
    async def send_message(self, send: Send) -> None:
        async with self._r.sessionmaker() as session:
            row = await repo.message(session, uuid.UUID(send.ident))
            if row is None or row.status == "sent":
                return
            session.expunge(row)
        await self._deliver(row)
        async with self._r.sessionmaker() as session, session.begin():
            await repo.mark_message_sent(session, row.id, datetime.now(UTC))

    async def _deliver(self, row: NotificationRow) -> None:
        key = f"{row.event_id}/{row.channel}/{row.recipient}"
        if row.channel == "email":
            try:
                await self._email.send(self._email.build(row.recipient, row.subject, row.body, str(row.id)))
            except smtplib.SMTPRecipientsRefused as exc:  # a 5xx for the address: retrying cannot help
                raise ApplicationError(
                    f"recipient refused: {exc}", type="RecipientRefused", non_retryable=True
                ) from None
        elif row.channel == "sms":
            timeout = self._r.settings.webhook_timeout_seconds
            async with httpx.AsyncClient(timeout=timeout) as client:
                await SmsSender(self._r.settings, client).send(row.recipient, row.body, key)
        else:
            message = {
                "type": "notification",
                "id": str(row.id),
                "event": row.event,
                "delivery_id": str(row.delivery_id) if row.delivery_id else None,
                "subject": row.subject,
                "body": row.body,
                "created_at": row.created_at.isoformat(),
            }
            await self._r.cache_bus.publish(channels.user_notifications(row.recipient), message)
            await self._r.cache_bus.publish(channels.org_notifications(str(row.organization_id)), message)

    @implements(NotificationInterface.mark_message_failed)
    async def mark_message_failed(self, failure: SendFailure) -> None:
        async with self._r.sessionmaker() as session, session.begin():
            await repo.mark_message_failed(session, uuid.UUID(failure.send.ident), failure.reason)

    @implements(NotificationInterface.deliver_webhook)
    async def deliver_webhook(self, send: Send) -> str:
        attempt = activity.info().attempt
        outcome = await attempt_webhook(
            self._r.sessionmaker, self._r.settings, uuid.UUID(send.ident), attempt
        )
        if outcome.status == "disabled":
            raise ApplicationError(
                outcome.detail, outcome.subscription_id, type=WEBHOOK_DISABLED, non_retryable=True
            )
        if outcome.status == "refused":  # the address policy forbids it: a retry would be refused too
            raise ApplicationError(outcome.detail, type=WEBHOOK_REFUSED, non_retryable=True)
        if outcome.status == "failed":
            raise ApplicationError(outcome.detail, type="WebhookAttemptFailed")  # retried by Temporal
        return outcome.status

    @implements(NotificationInterface.mark_webhook_failed)
    async def mark_webhook_failed(self, failure: SendFailure) -> None:
        async with self._r.sessionmaker() as session, session.begin():
            await repo.mark_webhook_failed(session, uuid.UUID(failure.send.ident))

    @implements(NotificationInterface.alert_webhook_disabled)
    async def alert_webhook_disabled(self, alert: DisabledAlert) -> EventPlan:
        """Tell the organization's admins (in-app and e-mail) that an endpoint was disabled."""
        async with self._r.sessionmaker() as session, session.begin():
            sub = await repo.subscription(session, uuid.UUID(alert.subscription_id))
            if sub is None or sub.disabled_at is None:
                return EventPlan()
            org_settings = await repo.notification_settings(session, sub.organization_id)
            locale = org_settings.locale if org_settings else self._r.settings.notification_locale
            text = render("webhook_disabled", locale, {"url": sub.url, "reason": sub.disabled_reason})
            event_id = f"webhook-disabled:{sub.id}:{sub.disabled_at.isoformat()}"
            planner = Planner(session, self._r.settings, self._enabled_channels())
            for admin in await repo.active_users(session, sub.organization_id, STAFF[:1]):
                for r in (Recipient("in_app", str(admin.id), admin.id), Recipient("email", admin.email)):
                    if r.channel in self._enabled_channels():
                        await planner.add_message(
                            sub.organization_id, event_id, "webhook_disabled", r, text.subject, text.text
                        )
            return EventPlan(await planner.sends_for(event_id))
