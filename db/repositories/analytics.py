"""Stored analytics reports and the organization facts the analytics need (time zone, names)."""

from __future__ import annotations

import uuid
from datetime import date, datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from db.models import AnalyticsReport, Depot, Driver, Organization, Vehicle


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
