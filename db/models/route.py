"""Route plans and vehicle routes: projections of RoutePlanWorkflow and RouteWorkflow."""

from __future__ import annotations

import uuid
from datetime import date, datetime
from typing import Any

from sqlalchemy import JSON, Date, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from db.base import Base, utcnow


class RoutePlanRow(Base):
    __tablename__ = "route_plans"
    __table_args__ = (Index("ix_route_plans_org_depot", "organization_id", "depot_id", "id"),)

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    organization_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("organizations.id", ondelete="CASCADE"))
    depot_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("depots.id", ondelete="CASCADE"))
    service_date: Mapped[date | None] = mapped_column(Date, default=None)
    status: Mapped[str] = mapped_column(String(32))
    requested_by: Mapped[str] = mapped_column(String(200))
    request: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    # The workflow's PlanState as JSON: plan, unassigned jobs with reasons, apply outcomes.
    state: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    error: Mapped[str | None] = mapped_column(Text, default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class RouteRow(Base):
    __tablename__ = "routes"
    __table_args__ = (
        Index("ix_routes_org_shift", "organization_id", "shift", "vehicle_id"),
        Index("ix_routes_driver_shift", "driver_id", "shift"),
    )

    id: Mapped[str] = mapped_column(String(120), primary_key=True)  # the RouteWorkflow id
    organization_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("organizations.id", ondelete="CASCADE"))
    vehicle_id: Mapped[uuid.UUID]
    driver_id: Mapped[uuid.UUID | None] = mapped_column(default=None)
    depot_id: Mapped[uuid.UUID | None] = mapped_column(default=None)
    shift: Mapped[str] = mapped_column(String(32))
    plan_id: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(32))
    # The workflow's version of the state written last: the projection only moves forward.
    version: Mapped[int] = mapped_column(Integer, default=0)
    start_at: Mapped[datetime]
    estimated_end: Mapped[datetime | None] = mapped_column(default=None)
    state: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)
