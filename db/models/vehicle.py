from __future__ import annotations

import uuid
from datetime import time

from sqlalchemy import JSON, Boolean, Float, ForeignKey, Integer, String, Time, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from db.base import Base, IdMixin, TimestampMixin


class Vehicle(IdMixin, TimestampMixin, Base):
    __tablename__ = "vehicles"
    __table_args__ = (UniqueConstraint("organization_id", "name"),)

    organization_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("organizations.id", ondelete="CASCADE"), index=True
    )
    name: Mapped[str] = mapped_column(String(100))
    plate: Mapped[str | None] = mapped_column(String(32), default=None)
    profile: Mapped[str] = mapped_column(String(20), default="van")
    capacity_weight_kg: Mapped[float | None] = mapped_column(Float, default=None)
    capacity_volume_m3: Mapped[float | None] = mapped_column(Float, default=None)
    capacity_units: Mapped[int | None] = mapped_column(Integer, default=None)
    skills: Mapped[list[str]] = mapped_column(JSON, default=list)
    home_depot_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("depots.id", ondelete="RESTRICT"), default=None, index=True
    )
    shift_start: Mapped[time | None] = mapped_column(Time, default=None)  # local time at the home depot
    shift_end: Mapped[time | None] = mapped_column(Time, default=None)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
