"""Stored analytics: one report per organization and local day, recomputed in place (backfill)."""

from __future__ import annotations

import uuid
from datetime import date, datetime
from typing import Any

from sqlalchemy import JSON, Date, ForeignKey, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from db.base import Base, utcnow
from domain.ids import uuid7


class AnalyticsReport(Base):
    __tablename__ = "analytics_reports"
    __table_args__ = (UniqueConstraint("organization_id", "day"),)

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid7)
    organization_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("organizations.id", ondelete="CASCADE"))
    day: Mapped[date] = mapped_column(Date)  # local date in `timezone`
    timezone: Mapped[str] = mapped_column(String(64))
    final: Mapped[bool] = mapped_column(default=False)  # False: the hourly run of a day still going on
    deliveries: Mapped[int] = mapped_column(Integer, default=0)
    # {"groups": {group_by: {key: KpiParts}}, "routes": [RouteKpis], "labels": {id: name}}
    report: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    computed_at: Mapped[datetime] = mapped_column(default=utcnow)
