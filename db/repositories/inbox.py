"""A user's in-app notifications (the `in_app` channel of the notifications table)."""

from __future__ import annotations

import uuid

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from db.models import NotificationRow
from db.repositories.listing import page_rows

IN_APP = "in_app"


class InboxRepository:
    def __init__(self, session: AsyncSession, user_id: uuid.UUID) -> None:
        self.session = session
        self.user_id = user_id

    async def page(
        self, unread: bool | None, *, after: uuid.UUID | None, limit: int
    ) -> list[NotificationRow]:
        """A page in id order: only unread (True) or read (False) ones if given."""
        stmt = select(NotificationRow).where(
            NotificationRow.user_id == self.user_id, NotificationRow.channel == IN_APP
        )
        if unread is not None:
            stmt = stmt.where(
                NotificationRow.read_at.is_(None) if unread else NotificationRow.read_at.is_not(None)
            )
        return await page_rows(self.session, stmt, NotificationRow, after, limit)

    async def get(self, notification_id: uuid.UUID) -> NotificationRow | None:
        row = await self.session.get(NotificationRow, notification_id)
        return row if row is not None and row.user_id == self.user_id and row.channel == IN_APP else None
