"""Tables of the SQL history store (the embedded twin of the MongoDB collections)."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import JSON, BigInteger, Float, Index, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from db.base import Base, utcnow


class PositionRow(Base):
    __tablename__ = "position_history"
    __table_args__ = (
        UniqueConstraint("vehicle_id", "recorded_at", "seq"),
        Index("ix_position_history_org_vehicle_time", "organization_id", "vehicle_id", "recorded_at"),
    )

    id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    )
    organization_id: Mapped[uuid.UUID]
    vehicle_id: Mapped[uuid.UUID]
    driver_id: Mapped[uuid.UUID | None] = mapped_column(default=None)
    recorded_at: Mapped[datetime]
    received_at: Mapped[datetime] = mapped_column(default=utcnow)
    seq: Mapped[int] = mapped_column(BigInteger)
    lat: Mapped[float] = mapped_column(Float)
    lon: Mapped[float] = mapped_column(Float)
    accuracy_m: Mapped[float | None] = mapped_column(Float, default=None)
    speed_mps: Mapped[float | None] = mapped_column(Float, default=None)
    heading_deg: Mapped[float | None] = mapped_column(Float, default=None)


class DeliveryEventRow(Base):
    __tablename__ = "delivery_events"
    __table_args__ = (
        UniqueConstraint("workflow_id", "sequence"),
        Index("ix_delivery_events_org_delivery", "organization_id", "delivery_id", "sequence"),
    )

    id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    )
    organization_id: Mapped[uuid.UUID]
    delivery_id: Mapped[uuid.UUID]
    workflow_id: Mapped[str] = mapped_column(String(200))
    sequence: Mapped[int] = mapped_column(Integer)
    type: Mapped[str] = mapped_column(String(64))
    occurred_at: Mapped[datetime]
    actor: Mapped[str | None] = mapped_column(String(200), default=None)
    data: Mapped[dict[str, object]] = mapped_column(JSON, default=dict)
