"""Route plans as the API requests and reads them: the row a plan starts with (the workflow's own
projection, db/repositories/route_plans.py, overwrites it) and an organization's plans newest first."""

from __future__ import annotations

import uuid
from typing import Any, cast

from sqlalchemy import Table

from db.models import RoutePlanRow
from db.repositories.base import OrgScopedRepository
from db.upsert import insert_ignoring

_PLANS = cast(Table, RoutePlanRow.__table__)


class RoutePlanRowRepository(OrgScopedRepository[RoutePlanRow]):
    model = RoutePlanRow

    async def add_requested(self, plan_id: uuid.UUID, **values: Any) -> None:
        """The plan's first row, unless one with its id exists (a retried request with the same key)."""
        dialect = self.session.get_bind().dialect.name
        await self.session.execute(
            insert_ignoring(dialect, _PLANS, ["id"]).values(
                id=plan_id, organization_id=self.organization_id, **values
            )
        )

    async def newest_first(
        self, *, depot_id: uuid.UUID | None, status: str | None, before: uuid.UUID | None, limit: int
    ) -> list[RoutePlanRow]:
        q = self._scoped()
        if depot_id is not None:
            q = q.where(RoutePlanRow.depot_id == depot_id)
        if status is not None:
            q = q.where(RoutePlanRow.status == status)
        if before is not None:
            q = q.where(RoutePlanRow.id < before)
        return list((await self.session.scalars(q.order_by(RoutePlanRow.id.desc()).limit(limit))).all())
