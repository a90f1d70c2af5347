"""The business gauges a worker exports (workers/metrics.py), read from the projection: a few
aggregate queries, indexed by status."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from db.models import DeliveryRow, RouteRow

OPEN_STATUSES = ("pending", "assigned", "picked_up", "out_for_delivery", "arrived")


@dataclass(frozen=True)
class BusinessCounts:
    deliveries: dict[str, int]  # by status
    late_open: int  # open deliveries whose promised window has passed
    oldest_pending: datetime | None  # creation of the oldest pending delivery
    routes: dict[str, int]  # by status


async def business_counts(session: AsyncSession, now: datetime) -> BusinessCounts:
    by_status = dict(
        (await session.execute(select(DeliveryRow.status, func.count()).group_by(DeliveryRow.status))).all()
    )
    late = await session.scalar(
        select(func.count()).where(DeliveryRow.status.in_(OPEN_STATUSES), DeliveryRow.window_end < now)
    )
    oldest = await session.scalar(
        select(func.min(DeliveryRow.created_at)).where(DeliveryRow.status == "pending")
    )
    routes = dict(
        (await session.execute(select(RouteRow.status, func.count()).group_by(RouteRow.status))).all()
    )
    return BusinessCounts(by_status, late or 0, oldest, routes)
