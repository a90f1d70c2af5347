"""Side effects of delivery transitions. Each is idempotent on (workflow id, sequence):
the projection only moves forward, the event log and the outbox have unique keys, and a repeated
publish is harmless (subscribers drop sequences they have seen)."""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING, Any

from activities.interfaces import implements
from activities.interfaces.deliveries import DeliveryInterface
from db.history.base import DeliveryEvent
from db.repositories.outbox import record_event
from db.repositories.projection import write_projection
from domain import channels
from domain.delivery import Transition
from domain.notifications import NotificationEvent, event_id
from plumbing.codec import to_jsonable

if TYPE_CHECKING:
    from activities.resources import ActivityResources as Resources
    from activities.resources import NotificationCalls


def change_message(t: Transition) -> dict[str, Any]:
    return {
        "type": "delivery.changed",
        "delivery_id": t.delivery_id,
        "sequence": t.sequence,
        "event": t.type,
        "status": t.to_status.value,
        "occurred_at": t.occurred_at.isoformat(),
        "vehicle_id": t.state.vehicle_id if t.state else None,
    }


class DeliveryActivities(DeliveryInterface):
    def __init__(self, resources: Resources, workflows: NotificationCalls) -> None:
        self._r = resources
        self._workflows = workflows

    @implements(DeliveryInterface.project_delivery)
    async def project_delivery(self, t: Transition) -> None:
        assert t.state is not None, "transitions carry the state they lead to"
        async with self._r.sessionmaker() as session, session.begin():
            await write_projection(session, t.state, t.occurred_at)

    @implements(DeliveryInterface.append_delivery_event)
    async def append_delivery_event(self, t: Transition) -> None:
        data = {"from": t.from_status.value if t.from_status else None, "to": t.to_status.value, **t.data}
        await self._r.history.append_event(
            DeliveryEvent(
                organization_id=uuid.UUID(t.organization_id),
                delivery_id=uuid.UUID(t.delivery_id),
                workflow_id=t.workflow_id,
                sequence=t.sequence,
                type=t.type,
                occurred_at=t.occurred_at,
                actor=t.actor,
                data=to_jsonable(data),
            )
        )

    @implements(DeliveryInterface.publish_delivery_change)
    async def publish_delivery_change(self, t: Transition) -> None:
        message = change_message(t)
        targets = [channels.org_deliveries(t.organization_id), channels.delivery(t.delivery_id)]
        if t.state is not None and t.state.vehicle_id:
            targets.append(channels.vehicle(t.state.vehicle_id))
        for channel in targets:
            await self._r.cache_bus.publish(channel, message)

    @implements(DeliveryInterface.notify)
    async def notify(self, t: Transition) -> None:
        """Record the event in the outbox and hand it to the delivery's NotificationWorkflow, which
        sends (e-mail, SMS, in-app, webhooks) with its own retries: this stays one insert and one RPC,
        so a slow or down receiver never holds up the delivery's Update."""
        async with self._r.sessionmaker() as session, session.begin():
            await record_event(
                session,
                organization_id=uuid.UUID(t.organization_id),
                delivery_id=uuid.UUID(t.delivery_id),
                workflow_id=t.workflow_id,
                sequence=t.sequence,
                event=t.type,
                payload={
                    **change_message(t),
                    "actor": t.actor,
                    "data": to_jsonable(t.data),
                    "state": to_jsonable(t.state) if t.state else None,
                },
            )
        event = NotificationEvent(
            event_id=event_id(t.workflow_id, t.sequence),
            workflow_id=t.workflow_id,
            organization_id=t.organization_id,
            delivery_id=t.delivery_id,
            sequence=t.sequence,
            type=t.type,
            occurred_at=t.occurred_at,
        )
        await self._workflows.notify_event(event)
