"""The audit log: events added to the caller's session (they commit with the change they describe),
and an organization's events read newest first."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from db.models import AuditEvent


def add_event(session: AsyncSession, **fields: Any) -> AuditEvent:
    """Add an event (the columns of AuditEvent as keywords) to the session; the caller commits."""
    event = AuditEvent(**fields)
    session.add(event)
    return event


async def events_page(
    session: AsyncSession,
    organization_id: uuid.UUID,
    *,
    action: str | None,
    since: datetime | None,
    until: datetime | None,
    before: uuid.UUID | None,
    limit: int,
) -> list[AuditEvent]:
    """The organization's events, newest first, older than the event `before` (the cursor), of one
    action and in [since, until) if given."""
    q = select(AuditEvent).where(AuditEvent.organization_id == organization_id)
    if action:
        q = q.where(AuditEvent.action == action)
    if since is not None:
        q = q.where(AuditEvent.occurred_at >= since)
    if until is not None:
        q = q.where(AuditEvent.occurred_at < until)
    if before is not None:
        q = q.where(AuditEvent.id < before)
    return list((await session.scalars(q.order_by(AuditEvent.id.desc()).limit(limit))).all())
