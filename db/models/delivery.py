"""The deliveries projection (the workflow is the source of truth), idempotency claims, the outbox."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Float, ForeignKey, Index, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from db.base import Base, utcnow


class DeliveryRow(Base):
    __tablename__ = "deliveries"
    __table_args__ = (
        UniqueConstraint("organization_id", "external_ref"),
        Index("ix_deliveries_org_status", "organization_id", "status", "id"),
        Index("ix_deliveries_org_window", "organization_id", "window_end"),
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    organization_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("organizations.id", ondelete="CASCADE"))
    # Sequence of the last transition written: the projection only moves forward (DESIGN.md).
    sequence: Mapped[int] = mapped_column(Integer, default=0)
    status: Mapped[str] = mapped_column(String(32))
    external_ref: Mapped[str | None] = mapped_column(String(128), default=None)
    attempt: Mapped[int] = mapped_column(Integer, default=1)
    vehicle_id: Mapped[uuid.UUID | None] = mapped_column(default=None, index=True)
    driver_id: Mapped[uuid.UUID | None] = mapped_column(default=None, index=True)
    priority: Mapped[int] = mapped_column(Integer, default=0)
    dropoff_address: Mapped[str] = mapped_column(String(500), default="")
    dropoff_lat: Mapped[float] = mapped_column(Float)
    dropoff_lon: Mapped[float] = mapped_column(Float)
    window_start: Mapped[datetime | None] = mapped_column(default=None)
    window_end: Mapped[datetime | None] = mapped_column(default=None)
    late: Mapped[bool] = mapped_column(default=False)
    state: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)  # the workflow state, as JSON
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class IdempotencyKey(Base):
    """An Idempotency-Key claimed by one create request; a repeat finds the same delivery."""

    __tablename__ = "idempotency_keys"
    __table_args__ = (UniqueConstraint("organization_id", "key"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    organization_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("organizations.id", ondelete="CASCADE"))
    key: Mapped[str] = mapped_column(String(255))
    request_hash: Mapped[str] = mapped_column(String(64))
    delivery_id: Mapped[uuid.UUID]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class NotificationOutbox(Base):
    """Notification requests written by the notify activity until channels deliver them."""

    __tablename__ = "notification_outbox"
    __table_args__ = (UniqueConstraint("workflow_id", "sequence", "event"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    organization_id: Mapped[uuid.UUID] = mapped_column(index=True)
    delivery_id: Mapped[uuid.UUID] = mapped_column(index=True)
    workflow_id: Mapped[str] = mapped_column(String(200))
    sequence: Mapped[int] = mapped_column(Integer)
    event: Mapped[str] = mapped_column(String(64))
    payload: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    sent_at: Mapped[datetime | None] = mapped_column(default=None)


class ProofFile(Base):
    """An uploaded proof-of-delivery file (photo or signature), stored by content hash."""

    __tablename__ = "proof_files"
    __table_args__ = (UniqueConstraint("organization_id", "sha256"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    organization_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("organizations.id", ondelete="CASCADE"))
    delivery_id: Mapped[uuid.UUID] = mapped_column(index=True)
    sha256: Mapped[str] = mapped_column(String(64))
    content_type: Mapped[str] = mapped_column(String(100))
    size_bytes: Mapped[int] = mapped_column(Integer)
    uploaded_by: Mapped[uuid.UUID]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
