"""The notification outbox: each delivery event worth telling, recorded once (unique on workflow id,
sequence and event) before it is handed to the delivery's NotificationWorkflow, which plans from it."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from db.models import NotificationOutbox
from db.upsert import insert_ignoring_into


async def record_event(
    session: AsyncSession,
    *,
    organization_id: uuid.UUID,
    delivery_id: uuid.UUID,
    workflow_id: str,
    sequence: int,
    event: str,
    payload: dict[str, Any],
) -> None:
    """Insert the event unless it is there (a retried notify activity)."""
    await session.execute(
        insert_ignoring_into(session, NotificationOutbox, ["workflow_id", "sequence", "event"]).values(
            organization_id=organization_id,
            delivery_id=delivery_id,
            workflow_id=workflow_id,
            sequence=sequence,
            event=event,
            payload=payload,
        )
    )


async def find_event(
    session: AsyncSession, workflow_id: str, sequence: int, event: str
) -> NotificationOutbox | None:
    return (
        await session.scalars(
            select(NotificationOutbox).where(
                NotificationOutbox.workflow_id == workflow_id,
                NotificationOutbox.sequence == sequence,
                NotificationOutbox.event == event,
            )
        )
    ).one_or_none()
