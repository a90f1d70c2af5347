"""Side effects of delivery transitions. Each is idempotent on (workflow id, sequence):
the projection only moves forward, the event log and the outbox have unique keys, and a repeated
publish is harmless (subscribers drop sequences they have seen)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import Table, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from activities.interfaces import implements
from activities.interfaces.deliveries import DeliveryInterface
from activities.notifications.fanout import signal_notification_workflow
from db.history.base import DeliveryEvent
from db.models import DeliveryRow, NotificationOutbox
from db.upsert import insert_ignoring
from domain import channels
from domain.delivery import DeliveryState, Transition
from domain.notifications import NotificationEvent, event_id
from plumbing.codec import to_json_text, to_jsonable

if TYPE_CHECKING:
    from activities.resources import ActivityResources as Resources


def projection_values(state: DeliveryState, *, state_as_text: bool = False) -> dict[str, Any]:
    """The projection row's columns for `state`. With `state_as_text` the `state` column comes as
    JSON text, for statements that bind it as text (one encoding instead of encode, decode and
    encode again)."""
    drop = state.spec.dropoff
    return {
        "sequence": state.sequence,
        "status": state.status.value,
        "external_ref": state.spec.external_ref,
        "attempt": state.attempt,
        "vehicle_id": uuid.UUID(state.vehicle_id) if state.vehicle_id else None,
        "driver_id": uuid.UUID(state.driver_id) if state.driver_id else None,
        "priority": state.spec.priority,
        "dropoff_address": drop.address,
        "dropoff_lat": drop.lat,
        "dropoff_lon": drop.lon,
        "window_start": drop.windows[0].start if drop.windows else None,
        "window_end": drop.windows[-1].end if drop.windows else None,
        "late": state.late,
        "state": to_json_text(state) if state_as_text else to_jsonable(state),
        "updated_at": state.updated_at,
    }


async def write_projection(
    sessionmaker: async_sessionmaker[AsyncSession], state: DeliveryState, occurred_at: datetime
) -> bool:
    """Write `state` to its row if it is newer than the row (its sequence), or insert the row if
    there is none; `occurred_at` stands in for a missing `created_at`. True if a row was written.
    The projection activity and the reconciler (activities/reconcile.py) both write through here."""
    values = projection_values(state)
    delivery_id = uuid.UUID(state.delivery_id)
    async with sessionmaker() as session, session.begin():
        moved = await session.execute(
            update(DeliveryRow)
            .where(DeliveryRow.id == delivery_id, DeliveryRow.sequence < state.sequence)
            .values(**values)
        )
        if moved.rowcount:  # type: ignore[attr-defined]
            return True
        # Not there yet (created outside the API) or already newer: insert-if-absent covers both.
        table = DeliveryRow.__table__
        assert isinstance(table, Table)
        dialect = session.get_bind().dialect.name
        inserted = await session.execute(
            insert_ignoring(dialect, table, ["id"]).values(
                id=delivery_id,
                organization_id=uuid.UUID(state.organization_id),
                created_at=state.created_at or occurred_at,
                **values,
            )
        )
        return bool(inserted.rowcount)  # type: ignore[attr-defined]


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
    def __init__(self, resources: Resources) -> None:
        self._r = resources

    @implements(DeliveryInterface.project_delivery)
    async def project_delivery(self, t: Transition) -> None:
        assert t.state is not None, "transitions carry the state they lead to"
        await write_projection(self._r.sessionmaker, t.state, t.occurred_at)

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
        table = NotificationOutbox.__table__
        assert isinstance(table, Table)
        async with self._r.sessionmaker() as session, session.begin():
            dialect = session.get_bind().dialect.name
            await session.execute(
                insert_ignoring(dialect, table, ["workflow_id", "sequence", "event"]).values(
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
        await signal_notification_workflow(await self._r.temporal.get(), self._r.settings, event)
