"""Plan one delivery event: who is told on which channel (rendered now, so a retry sends the same
text) and which webhook subscriptions get it. Rows are keyed by the event id, so planning twice
plans once."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from activities.notifications.rules import channels_for, effective_rules
from activities.notifications.templates import render
from db.models import DeliveryNotificationPrefs
from db.repositories import notifications as repo
from db.repositories.outbox import find_event
from domain.delivery import DeliveryState
from domain.notifications import EVENT_NAMES, EventPlan, NotificationEvent, Send, webhook_event_type
from plumbing.codec import from_jsonable, to_jsonable
from plumbing.settings import Settings

STAFF = ("admin", "dispatcher")


def template_values(
    settings: Settings, state: DeliveryState | None, payload: dict[str, Any]
) -> dict[str, Any]:
    data: dict[str, Any] = payload.get("data") or {}
    if state is None:
        return {"ref": payload.get("delivery_id", "")[:8], **data}
    eta = state.eta.strftime("%Y-%m-%d %H:%M UTC") if state.eta else "soon"
    return {
        **data,
        "ref": state.spec.external_ref or state.delivery_id[:8],
        "address": state.spec.dropoff.address,
        "tracking_url": settings.tracking_url_template.format(delivery_id=state.delivery_id),
        "eta": eta,
        "recipient_name": state.proof.recipient_name if state.proof else "",
        "reason": data.get("reason") or state.cancel_reason or "",
        "attempts": state.attempt,
    }


def webhook_payload(
    ev: NotificationEvent, state: DeliveryState | None, values: dict[str, Any]
) -> dict[str, Any]:
    public = EVENT_NAMES[ev.type]
    delivery: dict[str, Any] = {"id": ev.delivery_id, "sequence": ev.sequence}
    if state is not None:
        delivery.update(
            status=state.status.value,
            external_ref=state.spec.external_ref,
            eta=state.eta.isoformat() if state.eta else None,
            tracking_url=values.get("tracking_url"),
            vehicle_id=state.vehicle_id,
            driver_id=state.driver_id,
            proof=to_jsonable(state.proof) if state.proof else None,
        )
    return {
        "id": ev.event_id,
        "type": webhook_event_type(public),
        "occurred_at": ev.occurred_at.isoformat(),
        "organization_id": ev.organization_id,
        "delivery": delivery,
        "data": values.get("_event_data", {}),
    }


class Recipient:
    __slots__ = ("channel", "recipient", "user_id")

    def __init__(self, channel: str, recipient: str, user_id: uuid.UUID | None = None) -> None:
        self.channel, self.recipient, self.user_id = channel, recipient, user_id


def _address(
    channel: str, email: str | None, phone: str | None, user_id: uuid.UUID | None
) -> Recipient | None:
    target = {"email": email, "sms": phone, "in_app": str(user_id) if user_id else None}[channel]
    return Recipient(channel, target, user_id if channel == "in_app" else None) if target else None


class Planner:
    def __init__(self, session: AsyncSession, settings: Settings, enabled: set[str]) -> None:
        self._s = session
        self._settings = settings
        self._enabled = enabled  # channels with a configured server ("in_app" always)

    async def plan(self, ev: NotificationEvent) -> EventPlan:
        outbox = await find_event(self._s, ev.workflow_id, ev.sequence, ev.type)
        public = EVENT_NAMES.get(ev.type)
        if outbox is None or public is None:
            return EventPlan()
        raw_state = outbox.payload.get("state")
        state = from_jsonable(DeliveryState, raw_state) if raw_state else None
        org = uuid.UUID(ev.organization_id)
        org_settings = await repo.notification_settings(self._s, org)
        prefs = await repo.delivery_prefs(self._s, uuid.UUID(ev.delivery_id))
        locale = (
            (prefs and prefs.locale)
            or (org_settings and org_settings.locale)
            or self._settings.notification_locale
        )
        values = template_values(self._settings, state, outbox.payload)
        rules = effective_rules(org_settings.rules if org_settings else None)
        recipients = await self._recipients(org, public, rules, state, prefs)
        text = render(public, locale, values)
        for r in recipients:
            await self._add_message(ev, public, r, text.subject, text.text)
        values["_event_data"] = outbox.payload.get("data") or {}
        await self._add_webhooks(ev, public, webhook_payload(ev, state, values))
        return EventPlan(await self.sends_for(ev.event_id))

    async def _recipients(
        self,
        org: uuid.UUID,
        public: str,
        rules: dict[str, dict[str, list[str]]],
        state: DeliveryState | None,
        prefs: DeliveryNotificationPrefs | None,
    ) -> list[Recipient]:
        out: list[Recipient] = []
        if state is not None and not (prefs and prefs.opted_out):
            contact = state.spec.dropoff.contact
            for ch in channels_for(rules, public, "customer", prefs.channels if prefs else None):
                if (r := _address(ch, contact.email, contact.phone, None)) is not None:
                    out.append(r)
        staff_channels = channels_for(rules, public, "dispatchers")
        if staff_channels:
            for user in await repo.active_users(self._s, org, STAFF):
                out += [r for ch in staff_channels if (r := _address(ch, user.email, None, user.id))]
        driver_channels = channels_for(rules, public, "driver")
        if driver_channels and state is not None and state.driver_id:
            driver, driver_user = await repo.driver_and_user(self._s, org, uuid.UUID(state.driver_id))
            if driver is not None:
                email = driver.email or (driver_user.email if driver_user else None)
                out += [
                    r for ch in driver_channels if (r := _address(ch, email, driver.phone, driver.user_id))
                ]
        return [r for r in out if r.channel in self._enabled]

    async def add_message(
        self,
        org: uuid.UUID,
        event_id: str,
        event: str,
        r: Recipient,
        subject: str,
        body: str,
        delivery_id: uuid.UUID | None = None,
    ) -> None:
        await repo.add_message(
            self._s,
            organization_id=org,
            delivery_id=delivery_id,
            event_id=event_id,
            event=event,
            channel=r.channel,
            recipient=r.recipient,
            user_id=r.user_id,
            subject=subject[:300],
            body=body,
        )

    async def _add_message(
        self, ev: NotificationEvent, public: str, r: Recipient, subject: str, body: str
    ) -> None:
        await self.add_message(
            uuid.UUID(ev.organization_id), ev.event_id, public, r, subject, body, uuid.UUID(ev.delivery_id)
        )

    async def _add_webhooks(self, ev: NotificationEvent, public: str, payload: dict[str, Any]) -> None:
        for sub in await repo.active_subscriptions(self._s, uuid.UUID(ev.organization_id)):
            if public not in sub.events and "*" not in sub.events:
                continue
            await repo.add_webhook_delivery(
                self._s,
                sub,
                event_id=ev.event_id,
                event_type=payload["type"],
                delivery_id=uuid.UUID(ev.delivery_id),
                payload=payload,
            )

    async def sends_for(self, event_id: str) -> list[Send]:
        messages = await repo.messages_of_event(self._s, event_id)
        hooks = await repo.webhook_deliveries_of_event(self._s, event_id)
        return [Send("message", str(m.id), m.channel) for m in messages] + [
            Send("webhook", str(h.id), f"webhook:{h.subscription_id}") for h in hooks
        ]
