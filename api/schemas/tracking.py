"""Response and request models of the tracking API: positions, nearby, tracks, delivery tracking, links."""

from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field

from api.schemas.common import Coordinates, Input
from domain.delivery import DeliveryStatus
from domain.routes import StopStatus


class VehiclePositionOut(BaseModel):
    """A vehicle's latest accepted position, as the live pipeline cached it."""

    vehicle_id: uuid.UUID
    driver_id: uuid.UUID | None = None
    recorded_at: datetime = Field(description="the fix time the phone reported (UTC)")
    location: Coordinates
    accuracy_m: float | None = None
    speed_mps: float | None = None
    heading_deg: float | None = None
    age_seconds: float = Field(ge=0, description="how long ago the fix was taken")


class NearbyVehicleOut(BaseModel):
    vehicle_id: uuid.UUID
    name: str
    distance_m: float = Field(ge=0)
    position: VehiclePositionOut | None = Field(
        default=None, description="null only if the cached entry could not be read"
    )


class NearbyOut(BaseModel):
    center: Coordinates
    radius_m: float
    items: list[NearbyVehicleOut] = Field(description="nearest first")


class TrackPointOut(BaseModel):
    recorded_at: datetime
    location: Coordinates
    accuracy_m: float | None = None
    speed_mps: float | None = None
    heading_deg: float | None = None


class TrackOut(BaseModel):
    model_config = ConfigDict(populate_by_name=True)

    vehicle_id: uuid.UUID
    from_: datetime = Field(alias="from")
    to: datetime
    simplify_m: float | None = None
    stored_points: int = Field(ge=0, description="positions stored in the range")
    points: list[TrackPointOut] = Field(description="ordered by time; simplified if simplify_m was given")


class EtaSource(StrEnum):
    LIVE = "live"  # computed by live tracking from the vehicle's position (the route's tracked ETA)
    PLANNED = "planned"  # the route's plan, driven on from its progress
    ARRIVED = "arrived"  # the vehicle is at the stop: `eta` is when it arrived
    DELIVERY = "delivery"  # no route: the last ETA the delivery workflow was told


class DeliveryTrackingOut(BaseModel):
    delivery_id: uuid.UUID
    status: DeliveryStatus
    vehicle_id: uuid.UUID | None = None
    driver_id: uuid.UUID | None = None
    route_id: str | None = None
    stop_status: StopStatus | None = Field(default=None, description="the drop-off stop on its route")
    eta: datetime | None = Field(default=None, description="null once the delivery is finished")
    eta_source: EtaSource | None = None
    window_start: datetime | None = None
    window_end: datetime | None = None
    late: bool = False
    late_predicted: bool = False
    position: VehiclePositionOut | None = Field(
        default=None, description="the assigned vehicle's latest position; null if none or never reported"
    )
    updated_at: datetime | None = None


class ShareIn(Input):
    ttl_seconds: int | None = Field(
        default=None,
        ge=60,
        le=366 * 24 * 3600,
        description="link lifetime; default WAYBILL_TRACKING_SHARE_TTL_SECONDS, "
        "at most WAYBILL_TRACKING_SHARE_MAX_TTL_SECONDS",
    )


class ShareOut(BaseModel):
    token: str
    url: str = Field(description="the public tracking endpoint for this link; needs no login")
    expires_at: datetime


class PublicPositionOut(BaseModel):
    recorded_at: datetime
    location: Coordinates
    heading_deg: float | None = None


class PublicTrackingOut(BaseModel):
    """What a customer holding a tracking link may see: no ids, names or phone numbers."""

    status: DeliveryStatus
    eta: datetime | None = None
    window_start: datetime | None = None
    window_end: datetime | None = None
    position: PublicPositionOut | None = Field(
        default=None, description="shown only while the vehicle is heading to this drop-off or there"
    )
    updated_at: datetime | None = None
    expires_at: datetime = Field(description="when this link stops working")
