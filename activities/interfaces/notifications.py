"""The steps of the NotificationWorkflow (activities/notifications/activities.py implements them)."""

from __future__ import annotations

from temporalio import activity

from domain.notification_steps import DisabledAlert, SendFailure
from domain.notifications import EventPlan, NotificationEvent, Send


class NotificationInterface:
    @activity.defn(name="plan_notifications")
    async def plan_event(self, ev: NotificationEvent) -> EventPlan:
        """Who is told of the event on which channel, and which webhooks get it (planned once)."""
        raise NotImplementedError

    @activity.defn(name="send_notification")
    async def send_message(self, send: Send) -> None:
        """Send one planned message (e-mail, SMS or in-app), unless it was sent already."""
        raise NotImplementedError

    @activity.defn(name="mark_notification_failed")
    async def mark_message_failed(self, failure: SendFailure) -> None:
        raise NotImplementedError

    @activity.defn(name="deliver_webhook")
    async def deliver_webhook(self, send: Send) -> str:
        """One attempt at a webhook delivery; its outcome, or an error Temporal retries."""
        raise NotImplementedError

    @activity.defn(name="mark_webhook_failed")
    async def mark_webhook_failed(self, failure: SendFailure) -> None:
        raise NotImplementedError

    @activity.defn(name="alert_webhook_disabled")
    async def alert_webhook_disabled(self, alert: DisabledAlert) -> EventPlan:
        """Tell the organization's admins that an endpoint was disabled."""
        raise NotImplementedError
