"""Route planning's writes: each plan's state (`route_plans`) and each vehicle shift's route
(`routes`, the projection of its RouteWorkflow). Both only move forward."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime
from typing import Any

from sqlalchemy import and_, or_, update
from sqlalchemy.ext.asyncio import AsyncSession

from db.models import RoutePlanRow, RouteRow
from db.upsert import insert_ignoring_into
from domain.route_plans import PlanState
from domain.routes import RouteState
from plumbing.codec import to_jsonable


async def save_plan(session: AsyncSession, state: PlanState) -> None:
    """Insert the plan's row, or update it; a retried save of an older state never overwrites a newer one."""
    req = state.request
    values: dict[str, Any] = {
        "status": state.status.value,
        "state": to_jsonable(state),
        "error": state.error,
        "updated_at": state.updated_at or datetime.now(UTC),
    }
    plan_id = uuid.UUID(state.plan_id)
    await session.execute(
        insert_ignoring_into(session, RoutePlanRow, ["id"]).values(
            id=plan_id,
            organization_id=uuid.UUID(req.organization_id),
            depot_id=uuid.UUID(req.depot_id),
            service_date=date.fromisoformat(req.service_date) if req.service_date else None,
            requested_by=req.requested_by,
            request=to_jsonable(req),
            created_at=values["updated_at"],
            **values,
        )
    )
    await session.execute(
        update(RoutePlanRow)
        .where(RoutePlanRow.id == plan_id, RoutePlanRow.updated_at <= values["updated_at"])
        .values(**values)
    )


async def write_route(session: AsyncSession, state: RouteState) -> None:
    """Write the route's state to its row if newer (its version), or insert the row if there is none."""
    values: dict[str, Any] = {
        "driver_id": uuid.UUID(state.driver_id) if state.driver_id else None,
        "plan_id": state.plan_id,
        "status": state.status.value,
        "version": state.version,
        "start_at": state.start_at,
        "estimated_end": state.estimated_end,
        "state": to_jsonable(state),
        "updated_at": state.updated_at or datetime.now(UTC),
    }
    moved = await session.execute(
        update(RouteRow)
        .where(
            RouteRow.id == state.route_id,
            or_(
                RouteRow.version < state.version,
                # A plan applied after the vehicle's route of the day completed starts a new run
                # of the same workflow id, whose versions begin at 1 again: it replaces the row.
                and_(RouteRow.status == "completed", RouteRow.plan_id != state.plan_id),
            ),
        )
        .values(**values)
    )
    if moved.rowcount == 0:  # type: ignore[attr-defined]
        await session.execute(
            insert_ignoring_into(session, RouteRow, ["id"]).values(
                id=state.route_id,
                organization_id=uuid.UUID(state.organization_id),
                vehicle_id=uuid.UUID(state.vehicle_id),
                depot_id=uuid.UUID(state.depot_id) if state.depot_id else None,
                shift=state.shift,
                **values,
            )
        )
