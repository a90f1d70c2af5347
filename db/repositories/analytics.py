"""Stored analytics reports and what the analytics read of the system of record: the organization's
time zone and names, the day's deliveries (keyset pages), the vehicles' capacities, the routes of a
shift with their planned distances."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import date, datetime
from typing import Any

from sqlalchemy import Row, select
from sqlalchemy.ext.asyncio import AsyncSession

from db.models import (
    AnalyticsReport,
    DeliveryRow,
    Depot,
    Driver,
    Organization,
    RoutePlanRow,
    RouteRow,
    Vehicle,
)
from domain.delivery_checks import is_uuid


async def organization_timezone(session: AsyncSession, organization_id: uuid.UUID, default: str) -> str:
    """The reporting time zone: the first depot's (by creation), else `default`."""
    tz = await session.scalar(
        select(Depot.timezone)
        .where(Depot.organization_id == organization_id)
        .order_by(Depot.created_at, Depot.id)
        .limit(1)
    )
    return tz or default


async def organizations(session: AsyncSession) -> list[uuid.UUID]:
    return list((await session.scalars(select(Organization.id).order_by(Organization.id))).all())


async def fleet_labels(session: AsyncSession, organization_id: uuid.UUID) -> dict[str, str]:
    """Display names of the organization's vehicles, drivers and depots by id."""
    labels: dict[str, str] = {}
    for model in (Vehicle, Driver, Depot):
        rows = await session.execute(
            select(model.id, model.name).where(model.organization_id == organization_id)
        )
        labels.update({str(i): name for i, name in rows})
    return labels


async def save_report(
    session: AsyncSession,
    organization_id: uuid.UUID,
    day: date,
    timezone: str,
    final: bool,
    deliveries: int,
    report: dict[str, Any],
    computed_at: datetime,
) -> None:
    """Insert or replace the day's report (a recomputation overwrites; no commit here)."""
    row = await session.scalar(
        select(AnalyticsReport).where(
            AnalyticsReport.organization_id == organization_id, AnalyticsReport.day == day
        )
    )
    if row is None:
        row = AnalyticsReport(organization_id=organization_id, day=day)
        session.add(row)
    row.timezone, row.final, row.deliveries = timezone, final, deliveries
    row.report, row.computed_at = report, computed_at


async def reports_between(
    session: AsyncSession, organization_id: uuid.UUID, first: date, last: date
) -> list[AnalyticsReport]:
    stmt = (
        select(AnalyticsReport)
        .where(
            AnalyticsReport.organization_id == organization_id,
            AnalyticsReport.day >= first,
            AnalyticsReport.day <= last,
        )
        .order_by(AnalyticsReport.day)
    )
    return list((await session.scalars(stmt)).all())


async def deliveries_changed_between(
    session: AsyncSession,
    organization_id: uuid.UUID,
    start: datetime,
    end: datetime,
    after: uuid.UUID | None,
    limit: int,
) -> Sequence[Row[Any]]:
    """(id, vehicle_id, driver_id, window_start, window_end, state) of deliveries that may have an event
    in [start, end): created before the end and changed since the start (`updated_at` is the time of
    the last transition). One keyset page by id, after `after`."""
    stmt = (
        select(
            DeliveryRow.id,
            DeliveryRow.vehicle_id,
            DeliveryRow.driver_id,
            DeliveryRow.window_start,
            DeliveryRow.window_end,
            DeliveryRow.state,
        )
        .where(
            DeliveryRow.organization_id == organization_id,
            DeliveryRow.created_at < end,
            DeliveryRow.updated_at >= start,
        )
        .order_by(DeliveryRow.id)
        .limit(limit)
    )
    if after is not None:
        stmt = stmt.where(DeliveryRow.id > after)
    return (await session.execute(stmt)).all()


async def vehicle_capacities(
    session: AsyncSession, organization_id: uuid.UUID
) -> Sequence[Row[uuid.UUID, uuid.UUID | None, int | None, float | None, float | None]]:
    """(id, home_depot_id, capacity_units, capacity_weight_kg, capacity_volume_m3) of every vehicle."""
    rows = await session.execute(
        select(
            Vehicle.id,
            Vehicle.home_depot_id,
            Vehicle.capacity_units,
            Vehicle.capacity_weight_kg,
            Vehicle.capacity_volume_m3,
        )
        .where(Vehicle.organization_id == organization_id)
        .order_by(Vehicle.id)
    )
    return rows.all()


async def routes_of_shift(session: AsyncSession, org: uuid.UUID, shift: str) -> list[dict[str, Any]]:
    """The day's routes (their RouteState JSON) with the planned distance of their vehicle in the
    applied plan (`planned_distance_m`, None if the plan is gone)."""
    routes = list(
        (
            await session.scalars(
                select(RouteRow).where(RouteRow.organization_id == org, RouteRow.shift == shift)
            )
        ).all()
    )
    plan_ids = {uuid.UUID(r.plan_id) for r in routes if is_uuid(r.plan_id)}
    distances: dict[tuple[str, str], float] = {}
    if plan_ids:
        plans = await session.execute(
            # Scoped too: a route names its plan, and nothing read by id may cross organizations.
            select(RoutePlanRow.id, RoutePlanRow.state).where(
                RoutePlanRow.organization_id == org, RoutePlanRow.id.in_(plan_ids)
            )
        )
        for plan_id, state in plans:
            for planned in ((state or {}).get("plan") or {}).get("routes") or []:
                distances[(str(plan_id), str(planned.get("vehicle_id")))] = float(
                    planned.get("distance_m") or 0
                )
    return [{**r.state, "planned_distance_m": distances.get((r.plan_id, str(r.vehicle_id)))} for r in routes]
