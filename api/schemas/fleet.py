"""Depots, vehicles and drivers on the wire."""

from __future__ import annotations

import uuid
import zoneinfo
from datetime import datetime, time
from enum import StrEnum
from typing import Annotated

from pydantic import (
    BaseModel,
    Field,
    StringConstraints,
    WithJsonSchema,
    field_validator,
    model_validator,
)

from api.schemas.common import Coordinates, Email, Input, Name, Output, Phone, Skills


def _check_timezone(value: str | None) -> str | None:
    if value is None:
        return value
    try:
        zoneinfo.ZoneInfo(value)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown time zone {value!r}: use an IANA name such as 'Europe/Berlin'") from None
    return value


# Depots ------------------------------------------------------------------------------------


class DepotCreate(Input):
    name: Name
    address: Annotated[str, StringConstraints(max_length=500)] = ""
    location: Coordinates
    timezone: str = Field(default="UTC", max_length=64)

    _tz = field_validator("timezone")(_check_timezone)


class DepotUpdate(Input):
    name: Name | None = None
    address: Annotated[str, StringConstraints(max_length=500)] | None = None
    location: Coordinates | None = None
    timezone: str | None = Field(default=None, max_length=64)

    _tz = field_validator("timezone")(_check_timezone)


class DepotOut(Output):
    id: uuid.UUID
    name: str
    address: str
    location: Coordinates
    timezone: str
    created_at: datetime
    updated_at: datetime


# Vehicles ----------------------------------------------------------------------------------


class VehicleProfile(StrEnum):
    BIKE = "bike"
    SCOOTER = "scooter"
    CAR = "car"
    VAN = "van"
    TRUCK = "truck"


class Capacity(Input):
    weight_kg: float | None = Field(default=None, ge=0, le=100_000, allow_inf_nan=False)
    volume_m3: float | None = Field(default=None, ge=0, le=1_000, allow_inf_nan=False)
    units: int | None = Field(default=None, ge=0, le=100_000)


class Shift(Input):
    """Daily working hours in the home depot's time zone; an end before the start crosses midnight."""

    start: time
    end: time

    @model_validator(mode="after")
    def _not_empty(self) -> Shift:
        if self.start == self.end:
            raise ValueError("shift start and end must differ")
        if self.start.tzinfo or self.end.tzinfo:
            raise ValueError("shift times are local to the home depot: give them without an offset")
        return self


class VehicleCreate(Input):
    name: Annotated[str, StringConstraints(min_length=1, max_length=100)]
    plate: Annotated[str, StringConstraints(min_length=1, max_length=32)] | None = None
    profile: VehicleProfile = VehicleProfile.VAN
    capacity: Capacity = Field(default_factory=Capacity)
    skills: Skills = Field(default_factory=list)
    home_depot_id: uuid.UUID | None = None
    shift: Shift | None = None
    active: bool = True


class VehicleUpdate(Input):
    name: Annotated[str, StringConstraints(min_length=1, max_length=100)] | None = None
    plate: Annotated[str, StringConstraints(min_length=1, max_length=32)] | None = None
    profile: VehicleProfile | None = None
    capacity: Capacity | None = None
    skills: Skills | None = None
    home_depot_id: uuid.UUID | None = None
    shift: Shift | None = None
    active: bool | None = None


class CapacityOut(BaseModel):
    weight_kg: float | None
    volume_m3: float | None
    units: int | None


# A wall-clock time in the depot's zone, without an offset: RFC 3339 "partial-time", not "time"
# (which requires an offset), so clients and validators read it as what it is.
LocalTime = Annotated[
    time,
    WithJsonSchema({"type": "string", "format": "partial-time", "pattern": r"^\d{2}:\d{2}:\d{2}(\.\d+)?$"}),
]


class ShiftOut(BaseModel):
    start: LocalTime
    end: LocalTime


class VehicleOut(Output):
    id: uuid.UUID
    name: str
    plate: str | None
    profile: VehicleProfile
    capacity: CapacityOut
    skills: list[str]
    home_depot_id: uuid.UUID | None
    shift: ShiftOut | None
    active: bool
    created_at: datetime
    updated_at: datetime


# Drivers -----------------------------------------------------------------------------------


class DriverCreate(Input):
    name: Name
    phone: Phone | None = None
    email: Email | None = None
    user_id: uuid.UUID | None = Field(
        default=None, description="the driver's login (a user with role driver)"
    )
    vehicle_id: uuid.UUID | None = None
    skills: Skills = Field(default_factory=list)
    active: bool = True


class DriverUpdate(Input):
    name: Name | None = None
    phone: Phone | None = None
    email: Email | None = None
    user_id: uuid.UUID | None = None
    vehicle_id: uuid.UUID | None = None
    skills: Skills | None = None
    active: bool | None = None


class DriverOut(Output):
    id: uuid.UUID
    name: str
    phone: str | None
    email: str | None
    user_id: uuid.UUID | None
    vehicle_id: uuid.UUID | None
    skills: list[str]
    active: bool
    created_at: datetime
    updated_at: datetime
